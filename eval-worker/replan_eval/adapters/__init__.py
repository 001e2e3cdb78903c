"""Trainer adapters for the reward server: verl/EasyR1 (`verl.compute_score`) and TRL (`trl.make_reward_func`).

Both send rollouts to ``POST /v1/rewards`` through `client.RewardClient`; neither imports its trainer,
so they load in any training environment that has this package. Submodules are imported explicitly.
"""
