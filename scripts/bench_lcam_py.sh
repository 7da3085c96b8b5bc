#!/usr/bin/env bash
# #17's figures: the example's img/s with LCAM vs torch.optim.SGD(foreach) and the step alone.
set -e
PY=/root/.cache/lcam/torch-2.13.0/bin/python
cd "$(dirname "$0")/.."
uptime
for opt in lcam sgd lcam sgd; do
  $PY lcam-py/examples/torch_wrn.py --dataset cifar10 --data ~/.cache/lcam/data --model wrn-16-1 \
    --epochs 2 --limit-train 3840 --limit-test 500 --threads 2 --optimizer $opt 2>/dev/null | grep "epoch   2" | sed "s/^/$opt: /"
done
$PY lcam-py/examples/step_bench.py --threads 2 --steps 15 2>/dev/null
