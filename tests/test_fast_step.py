"""The compiled step equals the eager fp32 step, and the model forward has no graph breaks
(no host syncs or data-dependent shapes), so it compiles whole with static shapes."""

import pytest
import torch

from pixio_robot.models import create_model


@pytest.mark.slow
def test_compiled_fullgraph_matches_eager_loss_and_grads():
    torch.manual_seed(0)
    model = create_model("pixio_mae_test", img_size=64, mask_block=2)
    x = torch.randn(4, 3, 64, 64)
    ids = model.masking(4)[0]
    loss_e, pred_e, _ = model(x, ids_keep=ids)
    loss_e.backward()
    grads_e = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)  # fails on any graph break
    loss_c, pred_c, _ = compiled(x, ids_keep=ids)
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pred_c, pred_e, rtol=1e-4, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads_e[n], rtol=1e-3, atol=1e-5, msg=n)
    # random block masking inside the compiled graph too (static shapes)
    loss_r, _, mask = compiled(x)
    assert torch.isfinite(loss_r) and (mask.sum(1) == 12).all()


@pytest.mark.slow
def test_fast_bf16_step_matches_eager_fp32():
    """The fast step (compiled blocks, bf16 autocast) gives the eager fp32 step's loss and
    gradients for the same weights, images and masks, within bf16 round-off."""
    import copy

    from pixio_robot.pretrain.distributed import compile_blocks

    torch.manual_seed(0)
    ref = create_model("pixio_mae_test", img_size=64, mask_block=2)
    fast = copy.deepcopy(ref)
    compile_blocks(fast)
    x = torch.randn(8, 3, 64, 64)
    ids = ref.masking(8)[0]
    loss32, _, _ = ref(x, ids_keep=ids)
    loss32.backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, _, _ = fast(x, ids_keep=ids)
    loss16.backward()
    assert abs(loss16.item() - loss32.item()) / loss32.item() < 1e-2
    g32 = torch.cat([p.grad.flatten() for p in ref.parameters()])
    g16 = torch.cat([p.grad.flatten().float() for p in fast.parameters()])
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.99
    assert (g16 - g32).norm() / g32.norm() < 0.1
