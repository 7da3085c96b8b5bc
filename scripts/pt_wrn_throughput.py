#!/usr/bin/env python3
"""PyTorch reference throughput for BENCHMARKS.md: WRN-16-1 (the architecture of lcam-cli's
tch_backend.rs), plain SGD, batch 128 of random tensors, 2 threads: compute only.
Run with the cache venv: ~/.cache/lcam/torch-2.13.0/bin/python scripts/pt_wrn_throughput.py"""
import torch, torch.nn as nn, torch.nn.functional as F, time
if __name__ == "__main__":
    torch.set_num_threads(2)
class B(nn.Module):
    def __init__(s,i,o,st):
        super().__init__(); s.bn1=nn.BatchNorm2d(i); s.c1=nn.Conv2d(i,o,3,st,1,bias=False); s.bn2=nn.BatchNorm2d(o); s.c2=nn.Conv2d(o,o,3,1,1,bias=False)
        s.sc = None if i==o else nn.Conv2d(i,o,1,st,0,bias=False)
    def forward(s,x):
        o=F.relu(s.bn1(x)); sc = x if s.sc is None else s.sc(o)
        return s.c2(F.relu(s.bn2(s.c1(o))))+sc
class W(nn.Module):
    def __init__(s,d,k,nc):
        super().__init__(); n=(d-4)//6; w=[16,16*k,32*k,64*k]
        s.c=nn.Conv2d(3,16,3,1,1,bias=False); L=[]
        for g in range(3):
            for b in range(n): L.append(B(w[g] if b==0 else w[g+1], w[g+1], (1 if g==0 else 2) if b==0 else 1))
        s.b=nn.Sequential(*L); s.bn=nn.BatchNorm2d(w[3]); s.fc=nn.Linear(w[3],nc)
    def forward(s,x): return s.fc(F.adaptive_avg_pool2d(F.relu(s.bn(s.b(s.c(x)))),1).flatten(1))
if __name__ == "__main__":
    m=W(16,1,10); opt=torch.optim.SGD(m.parameters(),lr=0.1,momentum=0.9,weight_decay=5e-4)
    x=torch.randn(128,3,32,32); y=torch.randint(0,10,(128,))
    for i in range(25):
        if i==5: t=time.time()
        opt.zero_grad(); l=F.cross_entropy(m(x),y); l.backward(); opt.step(); l.item()
    print("img/s", 20*128/(time.time()-t))
