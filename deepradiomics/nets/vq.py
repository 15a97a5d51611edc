"""Vector quantizer with an exponential-moving-average (EMA) codebook.

The quantizer maps each D-dimensional latent vector to its nearest codeword (L2) in a codebook of K
codewords. As in MONAI's ``VectorQuantizer`` it exposes the indices: :meth:`VectorQuantizerEMA.quantize`
(latents -> indices) and :meth:`VectorQuantizerEMA.embed` (indices -> quantized latents) can be used
separately, e.g. to replace codewords before decoding (codeword ablation).

Codebook update (van den Oord et al. 2017, appendix; Razavi et al. 2019), per training step with the
one-hot assignments :math:`E \\in \\{0,1\\}^{N \\times K}` of the N latents :math:`z`:

.. math::

    n_k &\\leftarrow \\gamma n_k + (1-\\gamma) \\textstyle\\sum_i E_{ik} \\\\
    m_k &\\leftarrow \\gamma m_k + (1-\\gamma) \\textstyle\\sum_i E_{ik} z_i \\\\
    \\tilde n_k &= \\frac{n_k + \\epsilon}{\\sum_j n_j + K\\epsilon} \\sum_j n_j \\quad \\text{(Laplace smoothing)} \\\\
    e_k &= m_k / \\tilde n_k

with decay :math:`\\gamma` (0.99) and :math:`\\epsilon` (1e-5). The latent loss is the commitment loss
:math:`\\beta \\lVert z - \\mathrm{sg}(e) \\rVert^2` (mean over elements); gradients reach the encoder
through the straight-through estimator :math:`z + \\mathrm{sg}(e - z)`.

Two optional helpers keep the codebook alive: k-means initialisation from the first training batch and
restarting "dead" codewords (EMA count below ``dead_threshold``) at randomly chosen latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizerEMA(nn.Module):
    """Nearest-codeword vector quantizer with EMA codebook updates.

    Parameters
    ----------
    num_embeddings
        K, the number of codewords.
    embedding_dim
        D, the dimension of each codeword (the channel count of the latent).
    commitment_cost
        beta, weight of the commitment loss.
    decay, epsilon
        EMA decay and Laplace smoothing constant.
    kmeans_init
        Initialise the codebook by k-means on the first training batch's latents.
    kmeans_iters
        Lloyd iterations of that initialisation.
    dead_threshold
        A codeword whose EMA count falls below this is restarted at a random latent of the current
        batch (0 disables restarts).

    Examples
    --------
    >>> vq = VectorQuantizerEMA(16, 8)
    >>> z = torch.randn(2, 8, 4, 4)
    >>> z_q, latent_loss, indices = vq(z)
    >>> indices.shape, z_q.shape
    (torch.Size([2, 4, 4]), torch.Size([2, 8, 4, 4]))
    >>> torch.equal(vq.embed(indices), vq.embed(vq.quantize(z)))
    True
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        commitment_cost: float = 1.0,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.commitment_cost = float(commitment_cost)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.dead_threshold = float(dead_threshold)
        embedding = torch.randn(self.num_embeddings, self.embedding_dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("ema_cluster_size", torch.ones(self.num_embeddings))
        self.register_buffer("ema_w", embedding.clone())
        # 1 once the codebook has been initialised (by k-means or by the first update)
        self.register_buffer("initialized", torch.tensor(0 if self.kmeans_init else 1, dtype=torch.uint8))
        #: statistics of the last forward pass (plain floats, for logging)
        self.last_perplexity: float = float("nan")
        self.last_usage: float = float("nan")
        self.last_restarts: int = 0

    # ------------------------------------------------------------------ core mapping
    def distances(self, flat: torch.Tensor) -> torch.Tensor:
        """Squared L2 distances (N, K) between latents ``flat`` (N, D) and the codewords."""
        codebook = self.embedding.float()
        flat = flat.float()
        return flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codebook.t() + codebook.pow(2).sum(1)[None, :]

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (B, H, W) of the nearest codeword of each latent vector of ``z`` (B, D, H, W)."""
        b, d, h, w = z.shape
        if d != self.embedding_dim:
            raise ValueError(f"latent has {d} channels, the codebook {self.embedding_dim}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        return self.distances(flat).argmin(1).view(b, h, w)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantized latents (B, D, H, W) of codeword ``indices`` (B, H, W)."""
        return F.embedding(indices, self.embedding).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------ training helpers
    @torch.no_grad()
    def _kmeans(self, flat: torch.Tensor) -> None:
        n = flat.shape[0]
        k = self.num_embeddings
        choice = torch.randint(n, (k,), device=flat.device) if n < k else torch.randperm(n, device=flat.device)[:k]
        centers = flat[choice].clone()
        if n < k:  # duplicated picks would make twin codewords: separate them slightly
            centers += 1e-3 * flat.std() * torch.randn_like(centers)
        for _ in range(self.kmeans_iters):
            assign = torch.cdist(flat, centers).argmin(1)
            sums = torch.zeros_like(centers).index_add_(0, assign, flat)
            counts = torch.bincount(assign, minlength=k).to(flat.dtype)
            alive = counts > 0
            centers[alive] = sums[alive] / counts[alive, None]
        self.embedding.copy_(centers)
        self.ema_w.copy_(centers)
        self.ema_cluster_size.fill_(1.0)
        self.initialized.fill_(1)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        k = self.num_embeddings
        counts = torch.bincount(indices, minlength=k).to(flat.dtype)
        sums = torch.zeros(k, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, indices, flat)
        self.ema_cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_w.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.epsilon) / (total + k * self.epsilon) * total
        self.embedding.copy_(self.ema_w / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> int:
        dead = self.ema_cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        pick = torch.randint(flat.shape[0], (n_dead,), device=flat.device)
        fresh = flat[pick]
        self.embedding[dead] = fresh
        self.ema_w[dead] = fresh
        self.ema_cluster_size[dead] = 1.0
        return n_dead

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize ``z`` (B, D, H, W).

        Returns
        -------
        z_q
            Quantized latents with straight-through gradients to ``z`` (float32).
        latent_loss
            ``commitment_cost * mean((z - sg(z_q))**2)``.
        indices
            Codeword index of each latent cell, (B, H, W), int64.
        """
        z = z.float()
        b, d, h, w = z.shape
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialized):
            if self.kmeans_init:
                self._kmeans(flat)
            self.initialized.fill_(1)
        indices_flat = self.distances(flat).argmin(1)
        indices = indices_flat.view(b, h, w)
        if self.training:
            self._ema_update(flat, indices_flat)
            self.last_restarts = self._restart_dead(flat) if self.dead_threshold > 0 else 0
        with torch.no_grad():
            counts = torch.bincount(indices_flat, minlength=self.num_embeddings).float()
            probs = counts / counts.sum()
            self.last_perplexity = float(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))
            self.last_usage = float((counts > 0).float().mean())
        z_q = self.embed(indices)
        latent_loss = self.commitment_cost * F.mse_loss(z, z_q.detach())
        z_q = z + (z_q - z).detach()
        return z_q, latent_loss, indices


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of a codeword count vector: the effective number of codewords in use."""
    counts = counts.double()
    total = counts.sum()
    if total <= 0:
        return float("nan")
    probs = counts / total
    nz = probs[probs > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))
