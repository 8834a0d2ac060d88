"""The paper's command-line tools on real video LLMs: the benchmark evaluation, blind filtering of Video-R1 and the
policy-training launcher (accelerate)."""
