"""One launch each of the finish kernel and the attention kernel at batch 16 x 480 px, for Nsight
Compute (issue 13, tenth session): the two hand-written kernels of the batch-16 forward, where the
finish runs at ~1.7 TB/s (1.1 ms) and attention at ~310 TFLOP/s (4.2 ms).

    ncu --kernel-name regex:"upsample2|attention" --launch-count 2 --set full \\
        python3 scripts/gpu_ncu_two_kernels.py
"""

import torch

from lseg_encoder.kernels.attention import attention_from_qkv
from lseg_encoder.kernels.upsample_normalize import upsample2_normalize

gen = torch.Generator(device="cuda").manual_seed(0)
head = torch.randn(16, 512, 120, 120, device="cuda", generator=gen).half().to(memory_format=torch.channels_last)
qkv = torch.randn(16, 901, 3 * 1024, device="cuda", generator=gen).half()
features = upsample2_normalize(head, torch.float32)
out = attention_from_qkv(qkv, 16)
torch.cuda.synchronize()
print(tuple(features.shape), tuple(out.shape))
