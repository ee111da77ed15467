"""The hand-written Report serialization parses back to exactly what was logged."""

import numpy as np
import pytest
import torch

from entrowatch import _report
from entrowatch.v1 import entrowatch_pb2 as pb


def _encode(report):
    return pb.Report.FromString(_report.encode(report, "wire", 3, 8, pb.TRAIN, True,
                                               _report.Dropped()))


@pytest.mark.parametrize("rows,vocab", [(4, 50), (32, 152064)])  # bytes join / memmove paths
def test_report_with_tensors_round_trips(rows, vocab):
    rng = np.random.default_rng(rows)
    logits_bf16 = torch.from_numpy(rng.normal(0, 3, (rows, vocab)).astype(np.float32)).bfloat16()
    logits_f64 = rng.normal(0, 1, (rows, 7))
    q = torch.from_numpy(rng.normal(0, 1, (4, 5, 8)).astype(np.float32)).half()
    k = torch.from_numpy(rng.normal(0, 1, (2, 9, 8)).astype(np.float32)).half()
    targets = np.arange(rows) % 7

    report = _report.StepReport(11, 1_700_000_000_123_456_789)
    report.seq = 99
    report.logits.append(_report.LogitsItem(logits_bf16, vocab, 0.7, None, None))
    report.logits.append(_report.LogitsItem(logits_f64, 7, 1.0, targets,
                                            np.full(rows, pb.GENERATED)))
    report.attention.append(_report.AttentionItem(2, q, k, True, 0.25, np.full(5, pb.PROMPT)))
    report.token_entropies.append((np.array([0.5, 1.5], np.float32), 100, None))
    report.loss = 2.5
    report.grad_norm = torch.tensor(1.25)
    out = _encode(report)

    assert (out.run_id, out.rank, out.world_size, out.step, out.seq) == ("wire", 3, 8, 11, 99)
    assert out.time.ToNanoseconds() == 1_700_000_000_123_456_789
    first, second = out.logits
    assert (first.logits.dtype, list(first.logits.shape)) == (pb.BFLOAT16, [rows, vocab])
    assert first.logits.data == logits_bf16.view(torch.int16).numpy().tobytes()
    assert (first.valid_vocab, first.temperature) == (vocab, pytest.approx(0.7))
    assert (second.logits.dtype, list(second.logits.shape)) == (pb.FLOAT32, [rows, 7])
    assert second.logits.data == logits_f64.astype("<f4").tobytes()
    assert list(second.target_ids) == targets.tolist()
    assert list(second.token_kinds) == [pb.GENERATED] * rows
    (att,) = out.attention
    assert (att.layer, att.causal, att.scale) == (2, True, 0.25)
    assert att.q.data == q.numpy().tobytes() and list(att.q.shape) == [4, 5, 8]
    assert att.k.data == k.numpy().tobytes() and list(att.k.shape) == [2, 9, 8]
    assert list(att.query_kinds) == [pb.PROMPT] * 5
    assert list(out.token_entropies[0].values) == [0.5, 1.5]
    assert (out.scalars.loss, out.grad.global_norm) == (2.5, 1.25)


def test_nonfinite_rows_are_dropped_from_the_bytes():
    logits = torch.randn(6, 40).bfloat16()
    logits[1, 3] = float("nan")
    logits[2, 0] = float("inf")
    logits[4, :] = float("-inf")
    logits[5, 30:] = float("-inf")  # masked entries are fine
    logits[3, 39] = float("nan")  # beyond valid_vocab: padding, not read
    report = _report.StepReport(0, 0)
    report.logits.append(_report.LogitsItem(logits, 39, 1.0, None, None))
    dropped = _report.Dropped()
    out = pb.Report.FromString(_report.encode(report, "wire", 0, 1, pb.TRAIN, True, dropped))
    assert dropped.rows_nonfinite == 3
    (block,) = out.logits
    assert list(block.logits.shape) == [3, 40]
    assert block.logits.data == logits[[0, 3, 5]].view(torch.int16).numpy().tobytes()
