"""The pipeline's infrastructure: the stage runner, typed params, paths, the code deps of dvc.yaml, flat metrics and
`make verify`."""
