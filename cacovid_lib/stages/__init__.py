"""The embedded pipeline's stages as library calls, one module per stage (or per pair of stages that share code), each
with its figure: what a notebook of notebooks/ calls between its parameters cell and its outputs."""
