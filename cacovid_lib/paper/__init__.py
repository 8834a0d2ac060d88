"""The paper's GPU pipeline (paper/dvc.yaml): answering real benchmarks, one evaluation pass per model x benchmark,
the efficiency table, the report beside the paper's numbers, and the dry run on tiny models."""
