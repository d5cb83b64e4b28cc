"""A CompiledRunner serves many sizes and inputs from one process (issue 13's six-size GPU run).

On the H100 one runner timed at 260..910 px died at the fifth size with FailOnRecompileLimitHit:
each size had two graphs (host inputs become inference tensors on their way to the device, device
inputs made outside inference_mode do not), and the second of each was compiled at call time,
under Dynamo's global cap of 8. The same happens on CPU, sooner, with a lower cap.
"""

import torch

from lseg_encoder.model import build_encoder
from lseg_encoder.runners.compiled_runner import CompiledRunner

SIZES = ((32, 32), (32, 64))


def test_mixed_inference_and_plain_inputs_over_sizes_stay_under_the_recompile_cap():
    # 2 sizes x 2 kinds of input = 4 graphs of one forward; with the cap at 2, compiling any of them
    # at call time (outside the runner's lifted cap) fails, as the fifth size did under the cap of 8.
    # Dynamo's own patch(), not pytest's monkeypatch: undoing a monkeypatch on a torch config module
    # deletes the option (torch 2.13: "recompile_limit does not exist" in every later test)
    before = torch._dynamo.config.recompile_limit
    with torch._dynamo.config.patch(recompile_limit=2):
        _serve_two_sizes_with_both_kinds_of_input()
    assert torch._dynamo.config.recompile_limit == before  # and the option still exists for later tests


def _serve_two_sizes_with_both_kinds_of_input():
    torch.manual_seed(0)
    enc = build_encoder("tiny").eval()
    runner = CompiledRunner(enc, "fp32", "cpu", mode="default", freezing=False).activate()
    try:
        for size in SIZES:
            plain = torch.rand(1, 3, *size) * 2 - 1
            with torch.inference_mode():
                inference = plain.clone()
            a, b = runner.infer(plain), runner.infer(inference)
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            runner.infer(plain)  # the call-time path again, after both variants exist
        assert len(runner._compiled) == 4 and set(runner.compile_seconds) == {(1, *s) for s in SIZES}
    finally:
        runner.deactivate()
    torch._dynamo.reset()
