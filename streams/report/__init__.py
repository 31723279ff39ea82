"""`codeclm report`: a run's figures from its topics, as a self-contained HTML page and JSON.

collect (reads the topics) -> figures (pure computation) -> plots + html (rendering).
pair_cost (cost per accepted pair by stage) and text (plain-text tables) serve `codeclm bench` too.
"""
