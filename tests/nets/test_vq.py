"""VectorQuantizerEMA against direct computations (nearest codeword, EMA update, straight-through)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deepradiomics.nets.vq import VectorQuantizerEMA, perplexity  # noqa: E402
from deepradiomics.nets.vqseg import VQSegNet  # noqa: E402


def _quantizer(k=16, d=8, **kw):
    torch.manual_seed(0)
    return VectorQuantizerEMA(k, d, kmeans_init=False, **kw)


def test_indices_are_argmin_of_l2_distance():
    vq = _quantizer()
    z = torch.randn(3, 8, 5, 4)
    idx = vq.quantize(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8).numpy().astype(np.float64)
    book = vq.embedding.numpy().astype(np.float64)
    direct = np.array([np.argmin(((book - v) ** 2).sum(1)) for v in flat]).reshape(3, 5, 4)
    np.testing.assert_array_equal(idx.numpy(), direct)
    np.testing.assert_allclose(vq.embed(idx).permute(0, 2, 3, 1).numpy(), book[direct], rtol=0, atol=0)


def test_forward_in_eval_mode_matches_quantize_and_leaves_codebook_alone():
    vq = _quantizer().eval()
    before = vq.embedding.clone()
    z = torch.randn(2, 8, 4, 4)
    z_q, loss, idx = vq(z)
    assert torch.equal(idx, vq.quantize(z))
    assert torch.allclose(z_q, vq.embed(idx), atol=1e-6)
    assert torch.equal(vq.embedding, before)
    assert loss.item() == pytest.approx(float(((z - vq.embed(idx)) ** 2).mean()), rel=1e-5)


def test_ema_update_matches_the_formula_by_hand():
    k, d, decay, eps = 4, 3, 0.9, 1e-5
    vq = _quantizer(k, d, decay=decay, epsilon=eps).train()
    vq.embedding.copy_(torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]]))
    vq.ema_w.copy_(vq.embedding)
    vq.ema_cluster_size.fill_(1.0)
    z = torch.tensor([[1.0, 0, 0], [9, 1, 0], [11, -1, 0], [0.5, 0.5, 0.5]])  # codes 0, 1, 1, 0; codes 2, 3 unused
    z_in = z.t().reshape(1, d, 2, 2)  # (B, D, H, W) with the 4 vectors in row-major order
    _, _, idx = vq(z_in)
    assert idx.flatten().tolist() == [0, 1, 1, 0]
    counts = np.array([2.0, 2.0, 0.0, 0.0])
    sums = np.zeros((k, d))
    sums[0] = z[0] + z[3]
    sums[1] = z[1] + z[2]
    n = decay * 1.0 + (1 - decay) * counts
    m = decay * np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]]) + (1 - decay) * sums
    smoothed = (n + eps) / (n.sum() + k * eps) * n.sum()
    np.testing.assert_allclose(vq.ema_cluster_size.numpy(), n, rtol=1e-6)
    np.testing.assert_allclose(vq.ema_w.numpy(), m, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vq.embedding.numpy(), m / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_straight_through_gradient_and_commitment_gradient():
    vq = _quantizer().eval()
    z = torch.randn(1, 8, 2, 2, requires_grad=True)
    z_q, loss, idx = vq(z)
    (z_q.sum() + loss).backward()
    e = vq.embed(idx)
    # d(sum z_q)/dz = 1 (straight-through); d(beta * mean((z - sg(e))^2))/dz = 2 beta (z - e) / N
    expected = 1.0 + 2.0 * (z.detach() - e) / z.numel()
    assert torch.allclose(z.grad, expected, atol=1e-6)


def test_kmeans_initialisation_spreads_codewords_over_the_data():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(8, 2, kmeans_init=True).train()
    centers = torch.tensor([[-20.0, 0], [20, 0], [0, 20], [0, -20]])
    z = (centers.repeat(64, 1) + 0.1 * torch.randn(256, 2)).t().reshape(1, 2, 16, 16)
    assert int(vq.initialized) == 0
    vq(z)
    assert int(vq.initialized) == 1
    idx = vq.quantize(z)
    used = {int(i) for i in idx.unique()}
    assert len(used) >= 4  # every cluster has its own codeword (random init would not)
    nearest = torch.cdist(centers, vq.embedding).min(1).values
    assert bool((nearest < 1.0).all())


def test_dead_codewords_are_restarted_at_batch_latents():
    vq = _quantizer(8, 2, dead_threshold=0.5).train()
    vq.embedding.copy_(torch.full((8, 2), 1000.0))  # all far away ...
    vq.embedding[0] = torch.tensor([0.0, 0.0])  # ... except codeword 0, which takes every latent
    vq.ema_w.copy_(vq.embedding)
    vq.ema_cluster_size.fill_(0.1)
    vq.ema_cluster_size[0] = 10.0  # alive
    z = torch.randn(1, 2, 4, 4)
    vq(z)
    assert vq.last_restarts == 7
    latents = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for row in vq.embedding[1:]:
        assert bool((latents - row).abs().sum(1).min() < 1e-6)


def test_perplexity_and_usage():
    assert perplexity(torch.ones(16)) == pytest.approx(16.0)
    assert perplexity(torch.tensor([5.0, 0, 0, 0])) == pytest.approx(1.0)
    vq = _quantizer().eval()
    vq(torch.randn(2, 8, 4, 4))
    assert 1.0 <= vq.last_perplexity <= 16.0
    assert 0.0 < vq.last_usage <= 1.0


def test_vqsegnet_api_roundtrip_and_background_cache():
    torch.manual_seed(0)
    net = VQSegNet(
        3, 2, filters=(8, 8, 8, 8), decoder_filters=(8, 8, 8, 8), input_size=32, num_embeddings=16, embedding_dim=8
    ).eval()
    x = torch.randn(5, 3, 32, 32)
    x[[1, 3]] = 0.0
    z_e = net.encode(x)
    assert z_e.shape == (5, 8, 8, 8)
    idx = net.quantizer.quantize(z_e)
    logits = net.decode(net.quantizer.embed(idx))
    assert logits.shape == (5, 2, 32, 32)
    assert torch.equal(net.codeword_indices(x), idx)
    fast = net.volume_codeword_indices(x, batch_size=2)
    slow = torch.stack([net.codeword_indices(x[i : i + 1])[0] for i in range(5)])
    assert torch.equal(fast, slow)
    assert torch.equal(net.background_indices(), slow[1])
    with pytest.raises(ValueError, match="8 \\* 2\\*\\*n"):
        VQSegNet(3, 2, input_size=100)
