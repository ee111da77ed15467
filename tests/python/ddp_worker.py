"""One rank of a 2-process DDP (gloo) training run monitored by entrowatch.

Run by test_daemon.py with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set;
argv: grpc address, run id, steps.
"""

import sys

import torch
import torch.distributed as dist

import entrowatch
import entrowatch.torch


def main(address, run_id, steps):
    dist.init_process_group("gloo")
    torch.manual_seed(0)  # same initial weights on every rank
    layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                             batch_first=True, dropout=0.0)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Embedding(30, 16), layer, torch.nn.Linear(16, 30)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = entrowatch.Monitor(address, run_id=run_id)  # rank and world size from torch.distributed
    assert (mon.rank, mon.world_size) == (dist.get_rank(), 2)
    w = entrowatch.torch.watch(model, mon, lm_head=model.module[2],
                               attention_modules=[layer.self_attn])
    torch.manual_seed(1 + dist.get_rank())  # different data per rank
    for step in range(steps):
        w.step = step
        x = torch.randint(0, 30, (4, 8))
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 30), x.reshape(-1))
        loss.backward()
        w.log_grad_norm(per_layer=True)
        mon.log_scalars(step, loss=loss.detach(), lr=0.05)
        opt.step()
        opt.zero_grad()
    ok = mon.flush(30)
    dist.barrier()
    mon.close(finish=dist.get_rank() == 0)
    dist.destroy_process_group()
    return 0 if ok and mon.stats.rejected == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
