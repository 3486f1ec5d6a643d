"""minivbon.methods: one table of methods, read by the config's checks, the step budget and the loop."""
import math

import pytest
import torch

from minivbon import methods
from minivbon.config import SETTINGS, TrainConfig
from minivbon.loop import Trainer
from minivbon.methods import METHODS, Method
from minivbon.toy import TabularPolicy

NON_DEFAULT = {"beta": 0.5, "ties": "paper", "alpha": 0.2, "eta": 0.3, "anchor_ema": 0.5, "anchor_every": 3}


def config_for(name: str, **settings) -> TrainConfig:
    """The smallest config of a method: beta given where it must be."""
    given = {"beta": 0.5} if "beta" in METHODS[name].requires else {}
    k = 2 if METHODS[name].min_k_of_n is None else METHODS[name].min_k_of_n(4)  # bon-aware: k >= n + 1
    return TrainConfig(**{"method": name, "n": 4, "k": k, "prompts_per_step": 2, "steps": 2, "lr": 0.1, **given,
                          **settings})


def test_every_row_is_complete_and_its_settings_are_config_fields():
    fields = set(TrainConfig.__dataclass_fields__)
    assert set(SETTINGS) <= fields
    for name, row in METHODS.items():
        assert isinstance(row, Method) and callable(row.step) and callable(row.cost) and row.summary
        assert set(row.reads) <= set(SETTINGS), name
        assert set(row.requires) <= set(row.reads), name  # a required setting is one the method reads
        assert row.min_k >= 1 and row.min_n >= 1
        assert (row.after_update is not None) == row.anchored, name


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_through_the_one_loop_at_its_step_budget(toy, name):
    world, ref, reward_fn, cdf = toy
    cfg = config_for(name)
    trainer = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0, 1], reward_fn, cfg, cdf=cdf)
    before = trainer.policy.logits.detach().clone()
    trainer.run(progress=False)
    prompts, sampled = cfg.step_budget
    assert sampled == prompts * METHODS[name].cost(cfg)
    assert [h["samples"] for h in trainer.history] == [sampled, sampled]
    assert all(math.isfinite(h["loss"]) for h in trainer.history)
    assert not torch.equal(trainer.policy.logits, before)  # the step moved the policy


@pytest.mark.parametrize("name", [m for m, row in METHODS.items() if row.needs_cdf])
def test_a_method_that_needs_a_cdf_says_so(toy, name):
    world, ref, reward_fn, _ = toy
    with pytest.raises(ValueError, match=f"method '{name}' needs cdf="):
        Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0, 1], reward_fn, config_for(name))


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_unread_setting_is_refused_naming_exactly_its_readers(setting):
    readers = methods.readers(setting)
    assert readers == tuple(m for m, row in METHODS.items() if setting in row.reads) and readers
    for name, row in METHODS.items():
        if setting in row.reads:
            continue
        with pytest.raises(ValueError) as error:
            config_for(name, **{setting: NON_DEFAULT[setting]})
        message = str(error.value)
        assert f"{setting}=" in message and f"not read by method '{name}'" in message
        assert f"only {', '.join(readers)} read {setting}" in message


def test_min_k_and_min_n_come_from_the_row():
    for name, row in METHODS.items():
        least = row.min_k if row.min_k_of_n is None else row.min_k_of_n(4)  # bon-aware: k >= n + 1 = 5
        with pytest.raises(ValueError, match=f"k must be .*{least}"):
            config_for(name, k=least - 1)
        assert config_for(name, k=least).k == least
    assert TrainConfig(method="bon-sft", k=1).k == 1  # samples no policy output: one is enough
    with pytest.raises(ValueError, match="n"):
        TrainConfig(method="vbon", n=1)


def test_an_unknown_method_lists_the_table():
    with pytest.raises(ValueError, match="method must be one of .*'vbon'.*'dpo'"):
        methods.method("ppo")
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="ppo")


def test_a_new_row_is_all_a_new_method_needs(toy, monkeypatch):
    """Adding a method = one step function + one row: the config, the budget and the loop pick it up."""
    world, ref, reward_fn, cdf = toy

    def sft_on_reference_step(run, prompts, scored):  # maximum likelihood on plain reference samples
        samples = run.reference.sample(prompts, run.generator)
        return -run.policy.token_log_probs(samples).sum(-1).mean(), {"reward": scored(samples).mean().item()}

    row = Method(sft_on_reference_step, lambda cfg: 1, "SFT on reference samples", min_k=1)
    monkeypatch.setitem(METHODS, "sft-ref", row)
    cfg = TrainConfig(method="sft-ref", k=3, prompts_per_step=4, steps=3, lr=0.1)
    assert cfg.step_budget == (12, 12)
    with pytest.raises(ValueError, match="only vbon, vbon-l, kl-rl, bon-aware, dpo, bond read beta"):
        TrainConfig(method="sft-ref", beta=0.5)
    trainer = Trainer(TabularPolicy.from_first_order(world.ref_logits), ref, [0, 1], reward_fn, cfg)
    history = trainer.run(progress=False)
    assert [h["step"] for h in history] == [1, 2, 3] and all("reward" in h for h in history)
