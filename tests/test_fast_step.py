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
