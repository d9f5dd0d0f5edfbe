"""Evaluation: perplexity, code benchmarks (HumanEval, MBPP) run in the sandbox, document QA,
text metrics, the results store and the report. Models are reached only through
`generate.make_completer`, the one function the inference engine replaces."""
