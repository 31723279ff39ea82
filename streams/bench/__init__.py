"""`codeclm bench`: how close the pipeline sits to the LLM bound, and what it costs.

procfs.py   CPU seconds and memory of a process tree, from /proc
figures.py  pure arithmetic on samples: rates, steady-state windows, percentiles, efficiency
stack.py    the parts a run needs: broker, LLM doubles, worker processes
pipeline.py seeds in, accepted pairs out, sampling the doubles and the workers on the way
stage.py    one stage against a plain aiokafka consume-transform-produce loop
cost.py     LLM calls and tokens per accepted pair, by stage and iteration (and by purpose:
            streams/report/pair_cost.py, shared with `codeclm report`)
run.py      the whole benchmark, as `codeclm bench` runs it, and the prompt-set comparison
"""
