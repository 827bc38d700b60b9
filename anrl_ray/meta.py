"""The ANRL meta-learning step (``maml`` / ``reference`` / ``erm``), DDP-safe.

The whole step (meta-train forwards, inner ``autograd.grad(create_graph=True)``, fast
attention weights through ``torch.func.functional_call``, meta-test forward, loss) runs
inside :meth:`MetaLearner.forward`. DDP-wrap the :class:`MetaLearner` itself, so that
``DDP.forward`` runs exactly once per backward and gradients are all-reduced: calling
``functional_call`` on ``ddp.module`` from outside would bypass DDP and let ranks drift
apart silently (see docs/NOTES.md, "Meta-learning under DDP"). Use ``find_unused_parameters=True`` and
``broadcast_buffers=False`` like the reference (class centres and BN statistics stay local
to each rank, as there).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from anrl_ray.losses import ClassCentres, LossWeights, domain_losses
from anrl_ray.model import ANRLNet, ANRLOutput

MODES = ("maml", "reference", "erm")
_TERMS = ("cls", "depth", "idcl", "icsl", "total")


class MetaLearner(nn.Module):
    """ANRLNet + ClassCentres + the meta-learning step in ``forward``.

    Modes:
        ``maml``: textbook MAML/MLDG: ``theta_att' = theta_att - alpha * g``; the meta-test
            loss reaches ``theta_att`` through the identity and the second-order path.
        ``reference``: the reference's quirk, ``theta_att' = theta_att.detach() - alpha * g``
            (second-order path only); by default also its meta-train batching (below).
        ``erm``: no meta-learning; the sum of every domain's loss, one step.

    Args:
        model: the network.
        num_domains: number of source domains ``D`` (>= 2 for the meta modes).
        mode: one of ``MODES``.
        meta_step_size: inner step size ``alpha``.
        weights: loss weights.
        centre_momentum: EMA momentum of the class centres.
        interleave_meta_train: reproduce the reference's meta-train batching. Its
            ``mix_pos_neg`` flattens a ``(B, n_train)`` grid batch-major and then cuts it into
            ``n_train`` chunks of ``B``, so with two meta-train domains each "domain" forward
            holds half of each domain's samples (and its centre index is still the domain
            at that position). ``None`` (default) = on in ``reference`` mode, off otherwise.

    Attributes:
        centres: the :class:`ClassCentres` (buffers, saved in ``state_dict``).
        config: the step's settings (record it with the run).
    """

    def __init__(self, model: ANRLNet, num_domains: int, *, mode: str = "maml",
                 meta_step_size: float = 1e-4, weights: LossWeights = LossWeights(),
                 centre_momentum: float = 0.9, interleave_meta_train: bool | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if num_domains < (1 if mode == "erm" else 2):
            raise ValueError(f"mode {mode!r} needs at least 2 source domains, got num_domains={num_domains}")
        if interleave_meta_train is None:
            interleave_meta_train = mode == "reference"
        self.model = model
        self.centres = ClassCentres(num_domains, model.feature_channels, centre_momentum)
        self.num_domains = num_domains
        self.mode = mode
        self.meta_step_size = float(meta_step_size)
        self.weights = weights
        self.interleave_meta_train = bool(interleave_meta_train)
        self.config = dict(mode=mode, num_domains=num_domains, meta_step_size=self.meta_step_size,
                           weights=dict(vars(weights)), centre_momentum=float(centre_momentum),
                           interleave_meta_train=self.interleave_meta_train)

    def forward(self, images: Tensor, labels: Tensor, depth: Tensor,
                domain_order: list[int]) -> tuple[Tensor, dict[str, float]]:
        """One meta step's loss.

        Args:
            images: ``(D*2B, C, H, W)`` domain by domain: domain 0's B live then B spoof, then
                domain 1, ...
            labels: ``(D*2B,)`` int64 (0 live, 1 spoof).
            depth: ``(D*2B, 1, s, s)`` depth targets.
            domain_order: a permutation of ``range(D)``; the first ``D-1`` are meta-train, the
                last meta-test (ignored in ``erm`` mode except as the forward order).

        Returns:
            (loss to backward, logs): logs hold floats ``{train,test}/{cls,depth,idcl,icsl,total,acc}``
            (sums over the domains of that split) and ``loss``.
        """
        train_loss, test_loss, logs = self.compute_losses(images, labels, depth, domain_order)
        return train_loss + test_loss, logs

    @torch.no_grad()
    def forward_eval(self, images: Tensor) -> ANRLOutput:
        """Plain model forward (call in eval mode)."""
        return self.model(images)

    def compute_losses(self, images: Tensor, labels: Tensor, depth: Tensor,
                       domain_order: list[int]) -> tuple[Tensor, Tensor, dict[str, float]]:
        """The meta-train and meta-test losses separately (``forward`` returns their sum).

        In ``erm`` mode the first is the sum over all domains and the second is zero.
        """
        d = self.num_domains
        n = images.shape[0]
        if n == 0 or n % (2 * d):
            raise ValueError(f"images: expected D*2B samples with D={d}, got {n}")
        if labels.shape[0] != n or depth.shape[0] != n:
            raise ValueError(f"images, labels, depth disagree on batch size: {n}, {labels.shape[0]}, {depth.shape[0]}")
        if sorted(domain_order) != list(range(d)):
            raise ValueError(f"domain_order must be a permutation of range({d}), got {domain_order}")
        b = n // (2 * d)  # samples per domain and class
        per_domain = [slice(k * 2 * b, (k + 1) * 2 * b) for k in range(d)]

        if self.mode == "erm":
            batches = [(k, images[per_domain[k]], labels[per_domain[k]], depth[per_domain[k]])
                       for k in domain_order]
            train_loss, train_logs = self._split_loss(batches, None)
            return train_loss, train_loss.new_zeros(()), self._to_floats(train_logs, {}, train_loss)

        train_ids, test_id = list(domain_order[:-1]), domain_order[-1]
        if self.interleave_meta_train:
            train_batches = self._interleaved(images, labels, depth, train_ids, b)
        else:
            train_batches = [(k, images[per_domain[k]], labels[per_domain[k]], depth[per_domain[k]])
                             for k in train_ids]
        train_loss, train_logs = self._split_loss(train_batches, None)

        # Inner step on the extractor's attention nets only.
        names = self.model.attention_parameter_names()
        fast = None
        if names:
            params = dict(self.model.named_parameters())
            theta = [params[k] for k in names]
            grads = torch.autograd.grad(train_loss, theta, create_graph=True, allow_unused=True)
            fast = {}
            for k, p, g in zip(names, theta, grads):
                base = p.detach() if self.mode == "reference" else p  # reference reads state_dict()
                fast[k] = base if g is None else base - self.meta_step_size * g

        s = per_domain[test_id]
        test_loss, test_logs = self._split_loss([(test_id, images[s], labels[s], depth[s])], fast)
        return train_loss, test_loss, self._to_floats(train_logs, test_logs, train_loss + test_loss)

    def _split_loss(self, batches: list[tuple[int, Tensor, Tensor, Tensor]],
                    fast: dict[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum of ``domain_losses`` over (domain, images, labels, depth) batches, one forward each."""
        sums: dict[str, Tensor] = {}
        correct = 0
        count = 0
        for domain, x, y, dep in batches:
            out = self.model(x) if fast is None else functional_call(self.model, fast, (x,))
            terms = domain_losses(out, y, dep, domain, self.centres, self.weights)
            for k in _TERMS:
                sums[k] = terms[k] if k not in sums else sums[k] + terms[k]
            correct = correct + (out.logits.detach().argmax(1) == y).sum()
            count += y.shape[0]
        sums["acc"] = correct / count
        return sums["total"], sums

    @staticmethod
    def _interleaved(images: Tensor, labels: Tensor, depth: Tensor, train_ids: list[int],
                     b: int) -> list[tuple[int, Tensor, Tensor, Tensor]]:
        """The reference's meta-train batches (``mix_pos_neg`` + ``domain_select``)."""
        nt = len(train_ids)

        def grid(t: Tensor, offset: int) -> Tensor:
            # (nt, B, ...) -> (B, nt, ...) -> (B*nt, ...): batch-major, as reshape of [B, N] in the reference
            parts = torch.stack([t[k * 2 * b + offset: k * 2 * b + offset + b] for k in train_ids])
            return parts.transpose(0, 1).reshape(nt * b, *t.shape[1:])

        out = []
        for t in (images, labels, depth):
            out.append((grid(t, 0), grid(t, b)))  # (live, spoof)
        batches = []
        for j, domain in enumerate(train_ids):
            c = slice(j * b, (j + 1) * b)
            batches.append((domain, *(torch.cat([live[c], spoof[c]]) for live, spoof in out)))
        return batches

    @staticmethod
    def _to_floats(train: dict[str, Tensor], test: dict[str, Tensor], loss: Tensor) -> dict[str, float]:
        keys = [f"train/{k}" for k in train] + [f"test/{k}" for k in test] + ["loss"]
        values = torch.stack([v.detach().float().reshape(()) for v in (*train.values(), *test.values(), loss)])
        return dict(zip(keys, values.tolist()))  # one device sync
