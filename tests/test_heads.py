"""Phase two: cells, the honest sparse evaluation, FLOP accounting, run files, online budgets."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.config import TrainConfig
from c2f.data import Batch, length_batches, load_videos, uniform_positions
from c2f.evaluate import mean_ap, run_head
from c2f.heads import HeadDims, build_head
from c2f.heads import methods
from c2f.blocks.head import soft_targets
from c2f.heads.liteeval import LiteEvalHead, LiteEvalSettings
from c2f.blocks.rnn import Cell
from c2f.training.online import evaluate_online
from c2f.demo.synthetic import liteeval_cache
from c2f.rundir import load_run
from c2f.training import train_head
from pipeline.backbones import gflops_per_frame, parse_spec
from pipeline.core.manifest import read_manifest

from conftest import training_killed_when

ROLES = {"coarse": "mobilenet_v2@112", "fine": "resnet101@224"}


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    return liteeval_cache(tmp_path_factory.mktemp("syn"), num_train=48, num_val=24, num_classes=3,
                          frames=(3, 9), coarse=("mobilenet_v2@112", 8), fine=("resnet101@224", 12))


def small_config(cache, out, method, **overrides) -> TrainConfig:
    settings = dict(method=method, manifest=str(cache.manifest), cache=str(cache.cache), out=str(out),
                    frames=5, coarse_hidden=4, fine_hidden=8, policy_hidden=8, epochs=2, lr=1e-2, batch_size=16,
                    progress=False)
    return TrainConfig.of(**(settings | overrides))


def test_cells_match_torch_reference():
    torch.manual_seed(0)
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    lstm, reference = Cell("lstm", 5, 7), torch.nn.LSTMCell(5, 7)
    reference.weight_ih.data, reference.bias_ih.data = lstm.input_proj.weight.data, lstm.input_proj.bias.data
    reference.weight_hh.data, reference.bias_hh.data = lstm.hidden_proj.weight.data, torch.zeros(28)
    ref_h, ref_c = reference(x, (h, c))
    torch.testing.assert_close(lstm.step(lstm.project(x), torch.cat([h, c], 1)), torch.cat([ref_h, ref_c], 1))
    gru, reference = Cell("gru", 5, 7), torch.nn.GRUCell(5, 7)
    reference.weight_ih.data, reference.bias_ih.data = gru.input_proj.weight.data, gru.input_proj.bias.data
    reference.weight_hh.data, reference.bias_hh.data = gru.hidden_proj.weight.data, torch.zeros(21)
    torch.testing.assert_close(gru.step(gru.project(x), h), reference(x, h))
    sru = Cell("sru", 5, 7)
    assert sru.step(sru.project(x), torch.cat([h, c], 1)).shape == (3, 14)


def test_sync_copies_coarse_state_into_each_part():
    coarse, fine = Cell("lstm", 3, 2), Cell("lstm", 5, 4)
    coarse_state = torch.tensor([[1.0, 2.0, 3.0, 4.0]])                 # h = (1, 2), c = (3, 4)
    fine_state = torch.arange(10.0, 18.0)[None]                         # h = 10..13, c = 14..17
    synced = fine.sync_from(coarse, coarse_state, fine_state)
    assert synced.tolist() == [[1.0, 2.0, 12.0, 13.0, 3.0, 4.0, 16.0, 17.0]]


def test_uniform_positions_and_length_batches():
    positions = uniform_positions(torch.tensor([100, 3]), 4)
    assert positions[0].tolist() == [12, 37, 62, 87]
    assert positions[1].tolist() == [0, 1, 1, 2]                        # shorter than 4: repeats, in range
    lengths = torch.tensor([5, 1, 9, 3, 7, 2])
    batches = length_batches(lengths, 2, shuffle=False)
    assert [lengths[b].tolist() for b in batches] == [[1, 2], [3, 5], [7, 9]]
    shuffled = length_batches(lengths, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.cat(shuffled).tolist()) == list(range(6))


def test_liteeval_eval_never_reads_unused_fine_features(small_cache):
    """Evaluation reads a fine feature only where the gate fired: garbage in every unread fine
    feature changes nothing, and the fine reads are what the FLOPs charge."""
    manifest = read_manifest(small_cache.manifest, check_paths=False)
    videos = load_videos(manifest, "val", small_cache.cache, ROLES)
    torch.manual_seed(1)
    head = LiteEvalHead(HeadDims(3, 12, 8), LiteEvalSettings(coarse_hidden=4, fine_hidden=8))
    with torch.no_grad():
        head.gate.bias.copy_(torch.tensor([0.0, 0.3]))                  # fire on some frames, not all
    first = run_head(head, videos)
    read = torch.from_numpy(first.reads["fine"] > 0)
    assert 0 < read.sum() < len(read)
    videos.features["fine"][~read] = torch.randn(int((~read).sum()), 12).half() * 100
    second = run_head(head, videos)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.reads["fine"], second.reads["fine"])
    assert (first.reads["coarse"] == 1).all()                                # the coarse feature of every frame
    # FLOPs: coarse x frames + fine x reads + the head's counted steps
    c = head.costs
    frames, fine = first.per_video("coarse"), first.fine_count()
    coarse_cost, fine_cost = (videos.sets[role].gflops_per_frame for role in ("coarse", "fine"))   # the cache's
    expected = (frames * (coarse_cost + c["coarse_step"] + c["gate"]) + fine * (fine_cost + c["fine_step"])
                + c["classifier"])
    np.testing.assert_allclose(first.gflops, expected, rtol=1e-6)


def test_head_costs_are_counted_from_the_modules():
    head = LiteEvalHead(HeadDims(num_classes=10, fine_dim=2048, coarse_dim=1280), LiteEvalSettings(coarse_hidden=64, fine_hidden=512))
    c = head.costs
    # an LSTM step: 4 gates x H x (input + hidden) multiply-adds
    assert c["coarse_step"] == pytest.approx(4 * 64 * (1280 + 64) / 1e9)
    assert c["fine_step"] == pytest.approx(4 * 512 * (1280 + 2048 + 512) / 1e9)
    assert c["gate"] == pytest.approx(2 * (1280 + 512) / 1e9)
    assert c["classifier"] == pytest.approx(10 * 512 / 1e9)


def test_synthetic_sets_cost_what_the_sets_they_are_named_after_count(tmp_path):
    """A synthetic cache prices each set by counting the real network it is named after (the FLOP
    contract allows no typed-in GFLOPs): its shards' gflops_per_frame is the counted one."""
    from c2f.demo.synthetic import adafocus_cache
    made = [liteeval_cache(tmp_path / "l", num_train=3, num_val=2, frames=(2, 3)),
            adafocus_cache(tmp_path / "a", num_train=3, num_val=2, frames=(2, 3), grid=3)]
    sets = ["mobilenet_v2@112", "resnet101@224", "mobilenet_v2@224-map", "resnet50@224-grid3x128"]
    for cache, name in zip([made[0].cache] * 2 + [made[1].cache] * 2, sets):
        attrs = json.loads((cache / name / "index.json").read_text())["attrs"]
        assert attrs["gflops_per_frame"] == round(gflops_per_frame(parse_spec(name)), 6), name


def test_map_skips_classes_without_positives():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=float)
    scores = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    value, left_out = mean_ap(scores, targets, ["a", "b", "c"])
    assert left_out == ["c"]
    ap_a = (1 / 1 + 2 / 3) / 2          # a's positives rank 1st and 3rd
    ap_b = 1 / 2                        # b's one positive ranks 2nd
    assert value == pytest.approx((ap_a + ap_b) / 2)


@pytest.mark.parametrize("method", [name for name, m in methods().items() if not m.role_of_kind("grid")])
def test_every_method_trains_and_writes_the_run_files(small_cache, tmp_path, method):
    run = tmp_path / method
    sets = {r.option: ROLES[role] for role, r in methods()[method].roles.items()}     # the small cache's sets
    metrics = train_head(small_config(small_cache, run, method, **sets))
    for name in ("config.json", "metrics.json", "predictions.csv", "decisions.csv", "head.pt"):
        assert (run / name).exists(), name
    assert not (run / "checkpoint.pt").exists()
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("method", "split", "num_videos", "top1", "mAP", "gflops_mean", "gflops_std", "fine_mean", "fine_std"):
        assert key in saved
    assert saved["method"] == method and saved["num_videos"] == 24
    predictions = pd.read_csv(run / "predictions.csv")
    decisions = pd.read_csv(run / "decisions.csv")
    assert list(predictions.columns) == ["video_id", "label", "pred", "fine_count", "gflops"]
    assert list(decisions.columns) == ["video_id", "t", "fine"]
    per_video = decisions.groupby("video_id").fine.sum()
    assert (predictions.set_index("video_id").fine_count == per_video.loc[predictions.video_id].values).all()
    assert metrics["fine_mean"] == pytest.approx(predictions.fine_count.mean())
    # the FLOPs charge the fine feature per read
    fine_cost = gflops_per_frame(parse_spec("resnet101@224"))
    assert (predictions.gflops >= predictions.fine_count * fine_cost - 1e-4).all()
    config = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(config["settings"] | {"progress": False}) == small_config(small_cache, run, method,
                                                                                            **sets)
    # the head reloads from its weights alone and predicts the same
    cfg, head, classes = load_run(run)
    videos = load_videos(read_manifest(small_cache.manifest, check_paths=False), "val", small_cache.cache,
                         cfg.feature_sets())             # fine.0 for a role of several sets (AR-Net)
    again = run_head(head, videos)
    assert [classes[k] for k in again.scores.argmax(1)] == predictions.pred.tolist()


CELL_LAYOUT = {"lstm": (4, 2, True), "gru": (3, 1, True), "sru": (4, 2, False)}   # gates, state parts, hidden matmul


@pytest.mark.parametrize("rnn,sync", [("lstm", True), ("gru", True), ("sru", True), ("lstm", False)])
def test_liteeval_variants(small_cache, tmp_path, rnn, sync):
    """--rnn and --no-sync change what they say. The cell: its state layout ([h | c] for LSTM and SRU, [h]
    for GRU) and its counted step (SRU has no hidden-to-hidden matmul). The sync: with the gate shut, a
    synced fine RNN takes the coarse state into its first dims at every frame, so the prediction is the
    classifier on [coarse hidden, 0]; an unsynced one keeps its old (here initial, zero) state."""
    train_head(small_config(small_cache, tmp_path / "run", "liteeval", rnn=rnn, sync=sync, curve=False))
    _, head, _ = load_run(tmp_path / "run")
    gates, parts, recurrent = CELL_LAYOUT[rnn]
    assert head.coarse_cell.kind == head.fine_cell.kind == rnn and head.sync is sync
    assert (head.coarse_cell.state_size, head.fine_cell.state_size) == (parts * 4, parts * 8)
    fine_input = 8 + 12                     # [coarse, fine] features of small_cache
    assert head.costs["fine_step"] == pytest.approx(gates * 8 * (fine_input + 8 * recurrent) / 1e9)
    head.gate_threshold.fill_(1e9)
    head.exit_threshold.fill_(float("inf"))
    videos = load_videos(read_manifest(small_cache.manifest, check_paths=False), "val", small_cache.cache, ROLES)
    result = run_head(head, videos)
    assert result.fine_count().sum() == 0
    expected = []
    with torch.no_grad():
        for v in range(len(videos)):
            state = head.coarse_cell.initial_state(1)
            for frame in videos.features["coarse"][videos.offsets[v]:videos.offsets[v + 1]].float():
                state = head.coarse_cell(frame[None], state)
            fine_hidden = torch.zeros(1, 8)
            if sync:
                fine_hidden[:, :4] = head.coarse_cell.hidden(state)
            expected.append(head.classifier(fine_hidden).softmax(1)[0])
    np.testing.assert_allclose(result.scores, torch.stack(expected).numpy(), rtol=1e-5, atol=1e-6)


def test_liteeval_rl_learns_its_gate_by_reinforce(small_cache, tmp_path):
    """liteeval_rl samples the gate's decision and learns the gate by REINFORCE alone: its training output
    holds the sampled actions' log-probability, and the fire-rate penalty is a cost in the reward, not a
    loss term; its loss has a policy term (logged); the classification loss gives its gate no gradient
    (a sampled decision passes none) while the policy term does. The Gumbel gate (liteeval) is the other
    way round: no log-probability, the penalty a loss term, the gradient through its straight-through sample."""
    train_head(small_config(small_cache, tmp_path / "rl", "liteeval_rl", curve=False))
    logged = [json.loads(row) for row in pd.read_csv(tmp_path / "rl" / "log.csv").logs]
    assert all("policy" in row and "reward" in row and "fire_rate" not in row for row in logged)
    _, head, _ = load_run(tmp_path / "rl")
    gumbel = LiteEvalHead(head.dims, LiteEvalSettings(coarse_hidden=4, fine_hidden=8))
    videos = load_videos(read_manifest(small_cache.manifest, check_paths=False), "train", small_cache.cache, ROLES)
    batch = Batch(videos, torch.arange(len(videos)))
    torch.manual_seed(0)
    for model, reinforce in ((head, True), (gumbel, False)):
        model.train()
        out = model(batch)
        assert (out.action_log_prob is not None, out.reward_penalty is not None) == (reinforce, reinforce)
        assert ("fire_rate" in out.extra_loss) is not reinforce
        classification = torch.nn.functional.cross_entropy(out.logits, soft_targets(batch.targets))
        classification.backward(retain_graph=True)
        reached = model.gate.weight.grad is not None and bool(model.gate.weight.grad.any())
        assert reached is not reinforce
        if reinforce:
            assert out.action_log_prob.shape == (len(batch),) and out.action_log_prob.requires_grad
            model.zero_grad()
            loss, logs = model.training_loss(out, batch.targets)
            loss.backward()
            assert "policy" in logs and bool(model.gate.weight.grad.any())


def test_uniform_reads_each_selected_frame_once(small_cache, tmp_path):
    train_head(small_config(small_cache, tmp_path / "u", "uniform", frames=25))
    predictions = pd.read_csv(tmp_path / "u" / "predictions.csv")
    lengths = pd.read_csv(tmp_path / "u" / "decisions.csv").groupby("video_id").size()
    # videos of 3-9 frames, 25 requested: every frame read once, charged once
    assert (predictions.fine_count.values == lengths.loc[predictions.video_id].values).all()


@pytest.fixture(scope="module")
def online_runs(small_cache, tmp_path_factory):
    """A LiteEval run and a uniform run on the same fine features."""
    root = tmp_path_factory.mktemp("online")
    train_head(small_config(small_cache, root / "le", "liteeval", gamma=0.5))
    train_head(small_config(small_cache, root / "u", "uniform"))
    return root / "le", root / "u"


def test_online_budget_and_baselines(online_runs):
    run, uniform = online_runs
    rows = evaluate_online(run, [1, 2], uniform_run=uniform, progress=False)
    table = pd.DataFrame(rows)
    assert set(table.method) == {"liteeval", "uniform_k", "seq_k"}
    assert (table.fine_mean <= table.K + 1e-9).all()
    assert (run / "online.csv").exists()
    seq = table[table.method == "seq_k"].set_index("K")
    assert seq.loc[1, "fine_mean"] == 1.0


def test_online_loads_the_uniform_run_on_the_device_given(online_runs, monkeypatch):
    """`--uniform-run`'s head is loaded where `--device` says, as the run's head is (it was loaded on
    the CPU whatever --device said). Each load is watched here; the rows on CUDA equal the CPU's where
    there is a GPU."""
    import c2f.training.online
    run, uniform = online_runs
    on_cpu = pd.DataFrame(evaluate_online(run, [1, 2], uniform_run=uniform, progress=False, device="cpu"))
    asked, load_run = {}, c2f.training.online.load_run

    def watched(run_dir, device=None):
        asked[run_dir] = device
        return load_run(run_dir, device or "cpu")

    monkeypatch.setattr(c2f.training.online, "load_run", watched)
    evaluate_online(run, [1], uniform_run=uniform, progress=False, device="cpu")
    assert asked == {run: "cpu", uniform: "cpu"}
    if torch.cuda.is_available():
        asked.clear()
        on_gpu = pd.DataFrame(evaluate_online(run, [1, 2], uniform_run=uniform, progress=False, device="cuda"))
        assert set(asked.values()) == {"cuda"}
        pd.testing.assert_frame_equal(on_gpu, on_cpu, atol=1e-4, check_exact=False)


def test_resume_after_interruption_gives_the_same_head(small_cache, tmp_path):
    straight = small_config(small_cache, tmp_path / "straight", "liteeval", epochs=3)
    train_head(straight)
    interrupted = small_config(small_cache, tmp_path / "interrupted", "liteeval", epochs=3)
    with training_killed_when(lambda progress: progress.epoch == 2), pytest.raises(KeyboardInterrupt):
        train_head(interrupted)
    assert (tmp_path / "interrupted" / "checkpoint.pt").exists()
    train_head(interrupted)                     # the same command again: resumes at epoch 3
    a = torch.load(tmp_path / "straight" / "head.pt", weights_only=True)
    b = torch.load(tmp_path / "interrupted" / "head.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_head_rebuilds_from_config_dims():
    cfg = TrainConfig.of(method="lstm_cf", manifest="m", cache="c", out="o", fine_hidden=16)
    head = build_head(cfg, HeadDims(4, 12, 8))
    assert head.cell.input_size == 20 and tuple(cfg.record.roles) == ("coarse", "fine")


class SimulatedCrash(Exception):
    pass


def test_defaults_train_one_cycle_for_a_step_budget_and_resume_bit_identically(small_cache, tmp_path):
    """No --epochs, no --lr: AdamW at the default rate for as many epochs as --steps batches take (here
    20 epochs of 3 batches), the rate warmed up to its peak and annealed to nearly nothing, on the whole
    training split; metrics.json and log.csv say so. A run killed in the middle and started again with
    the same command resumes (each epoch logged once) and ends with the same head, bit for bit."""
    from c2f.training.schedule import MIN_EPOCHS
    settings = dict(method="lstm", manifest=str(small_cache.manifest), cache=str(small_cache.cache), frames=5,
                    coarse_hidden=4, fine_hidden=8, batch_size=16, progress=False, steps=60, curve=False)
    straight = train_head(TrainConfig.of(out=str(tmp_path / "straight"), **settings))
    training, default_lr = straight["training"], TrainConfig.lr
    assert training["epochs"] == 20 and training["steps"] == 60 and training["lr"] == default_lr
    assert training["length"] == "20 epochs: --steps 60 at 3 batches an epoch"
    assert "one cycle" in training["schedule"] and training["seconds"] > 0
    rates = pd.read_csv(tmp_path / "straight" / "log.csv").lr.to_numpy()
    assert len(rates) == 20 and rates.max() == pytest.approx(default_lr, rel=0.01)
    assert rates.argmax() <= 2 and rates[-1] < 0.01 * default_lr            # warmed up, then annealed
    short = train_head(TrainConfig.of(out=str(tmp_path / "short"), **(settings | {"steps": 6})))
    assert short["training"]["epochs"] == MIN_EPOCHS and short["training"]["steps"] == 3 * MIN_EPOCHS
    cfg = TrainConfig.of(out=str(tmp_path / "interrupted"), **settings)
    with training_killed_when(lambda progress: progress.epoch == 12, SimulatedCrash), pytest.raises(SimulatedCrash):
        train_head(cfg)
    assert (tmp_path / "interrupted" / "checkpoint.pt").exists()
    again = train_head(cfg)
    assert again["training"]["steps"] == 60 and not (tmp_path / "interrupted" / "checkpoint.pt").exists()
    assert pd.read_csv(tmp_path / "interrupted" / "log.csv").epoch.tolist() == list(range(1, 21))
    a = torch.load(tmp_path / "straight" / "head.pt", weights_only=True)
    b = torch.load(tmp_path / "interrupted" / "head.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_this_c2f_cannot_continue_starts_over(small_cache, tmp_path, caplog):
    """A checkpoint whose optimiser has other parameter groups (as another c2f version writes) is not
    resumed and does not stop the rerun: training starts over and ends with the head a straight run gives."""
    settings = dict(method="lstm", manifest=str(small_cache.manifest), cache=str(small_cache.cache), frames=5,
                    coarse_hidden=4, fine_hidden=8, batch_size=16, progress=False, epochs=4, curve=False)
    train_head(TrainConfig.of(out=str(tmp_path / "straight"), **settings))
    cfg = TrainConfig.of(out=str(tmp_path / "older"), **settings)
    with training_killed_when(lambda progress: progress.epoch == 2, SimulatedCrash), pytest.raises(SimulatedCrash):
        train_head(cfg)
    path = tmp_path / "older" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    groups = checkpoint["optimizer"]["param_groups"]
    checkpoint["optimizer"]["param_groups"] = groups + [dict(groups[0], params=[])]      # one group more
    torch.save(checkpoint, path)
    with caplog.at_level("WARNING"):
        train_head(cfg)
    assert "training starts over" in caplog.text and "resuming" not in caplog.text
    assert pd.read_csv(tmp_path / "older" / "log.csv").epoch.tolist() == [1, 2, 3, 4]
    a = torch.load(tmp_path / "straight" / "head.pt", weights_only=True)
    b = torch.load(tmp_path / "older" / "head.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_wide_layer_peaks_below_the_rate_unless_the_method_says_otherwise(small_cache, tmp_path):
    """AdamW's peak rate by layer: a weight reading more than 64 inputs gets lr x sqrt(64 / inputs) (the
    LSTM's 300-d input layer); FrameGlimpse's record gives every weight --lr."""
    from c2f.blocks.head import Stage
    from c2f.training.schedule import make_optimizer
    dims = HeadDims(coarse_dim=300, fine_dim=300, num_classes=3)
    for method, input_rate in [("lstm", 1e-2 * (64 / 300) ** 0.5), ("frameglimpse", 1e-2)]:
        cfg = small_config(small_cache, tmp_path / method, method)
        head = build_head(cfg, dims)
        optimizer, _ = make_optimizer(Stage("train", 2, cfg.lr, "adamw", list(head.parameters())), cfg, 3)
        peaks = {id(p): group["max_lr"] for group in optimizer.param_groups for p in group["params"]}
        assert peaks[id(head.cell.input_proj.weight)] == pytest.approx(input_rate)
        assert peaks[id(head.cell.input_proj.bias)] == pytest.approx(1e-2)
