"""Natural gradients of MLPs without inverting the Fisher matrix (docs/maths/natgrad.rst#natgrad).

:func:`natural_gradient` preconditions a loss gradient with one of eight approximations of
the Fisher information matrix F. Every unit-wise method uses the same abstraction
(docs/maths/natgrad.rst#natgrad-unit-blocks): the block of unit i of layer l is a scalar-weighted Gram of the unit's
augmented inputs ``x~ = [x^{l-1}; 1]``,

    G_i = (1/N) sum_s g2[s, i] x~_s x~_s^T,

where ``g2[s, i]`` is the per-sample metric weight of the unit (exact: rho^T Cov(t|h) rho
with rho = dh/du_i; score: squared backprop of a label drawn from the model; empirical:
squared backprop of the data label; bpm: Ollivier's backpropagated metric, the
diagonal of Cov(t|h) backpropagated with squared weights, one cheap pass, no sampling).

- ``full``: the dense P x P FIM (reference; small models only). Cost P^3/3 + N C P^2.
- ``unit``: exact unit blocks G_i + damping I, Cholesky per block (all units batched), or the
  sample-space Woodbury solve when N < n + 1. Cost 2 m N (n+1)^2 + m (n+1)^3 / 3, or
  m (N^2 n + N^3 / 3) in sample space.
- ``unit-correlated``: a Gaussian surrogate x ~ N(mu, Sigma) of the layer's inputs, Sigma
  shared by all units plus a per-unit rank 2 (docs/maths/natgrad.rst#natgrad-correlated-inputs).
  Cost N n^2 + n^3 (one eigh, reusable across steps) + 4 m n^2.
- ``unit-meanfield``: isotropic inputs (mean m, variance v), a scalar diagonal plus rank 2
  with an explicit O(n) inverse (docs/maths/natgrad.rst#natgrad-isotropic-unit). Cost O(m n).
- ``quasi-diagonal``: Ollivier's QD, per edge the 2 x 2 system on (bias, weight), then the bias
  correction (docs/maths/natgrad.rst#natgrad-quasi-diagonal). Cost 2 m N n + O(m n).
- ``diag``: the diagonal of F. Cost m N n.
- ``kfac``: per layer the Kronecker factors G_l (x) A_l of ``fisher(..., shape="kfac")``
  (docs/maths/kfac.rst#kfac-factors), solved with exact damping through the factors'
  eigendecompositions or with Martens & Grosse's factored damping (``damping_mode``).
  Cost 2 N n^2 + 2 N C m^2 for the factors (C backward rows per input), n^3 + m^3 for the
  eigendecompositions, 2 m n (m + n) per solve.
- ``ekfac``: the eigenbases of those factors with the diagonal re-fitted in them
  (docs/maths/kfac.rst#kfac-ekfac); one more pass over the inputs. At least as close as
  ``kfac`` to the layer block of F in Frobenius norm.

(m units of fan-in n per layer, N inputs, P parameters, C outputs.)

Trade-offs (docs/maths/natgrad.rst#natgrad-nonzero-mean):

* ``unit`` is exact for the block-diagonal of F and works for any trained network, but
  forms and factors ``m (n+1)^2`` numbers per layer: fine up to a few hundred inputs per
  unit. The sample-space solver takes over when the batch is smaller than the fan-in
  (it needs ``damping > 0``).
* ``unit-meanfield`` never forms a matrix: O(n) per unit, memory-bound (the compiled
  diagonal-plus-rank-2 row solve over W and the gradient, plus O(1) scalar work per unit,
  including the Gaussian integrals A_k, which need quadrature for tanh). It assumes that a
  layer's inputs are uncorrelated with a common mean and variance. That holds for the first
  layer of a random net (where it matches the exact block at the Monte Carlo noise floor),
  but **not** for deeper layers, whose inputs inherit a spread covariance: there its
  natural-gradient cosine with the exact block drops to 0.5-0.9 (measured by tests/python/test_natgrad.py).
* ``unit-correlated`` fixes that with the layer's input covariance (one n x n
  eigendecomposition per layer, shared by all units, so damping is exact for every unit);
  cosine >= 0.98 against the exact block in deep layers (tests/python/test_natgrad.py).
* ``quasi-diagonal`` keeps one 2 x 2 system per edge; it is invariant to affine changes of
  each input activity (docs/maths/natgrad.rst#natgrad-quasi-diagonal) but ignores weight-weight couplings.
* ``diag`` is the cheapest and is not invariant; ``full`` is the exact reference.

The mean-field methods scale each unit's block by ``beta_i``, the mean metric weight
backpropagated to the unit's *activity* (docs/maths/natgrad.rst#natgrad-meanfield-order-parameters), measured on the batch with
the chosen estimator. The output layer is treated as a layer of linear units.

Everything runs on the compiled engine: one pass over the inputs gives every method's
statistics (:func:`curvature`, optionally fused with the loss gradient), and each method's
per-unit systems go to a compiled solver (batched Cholesky, the sample-space solve, the
diagonal-plus-rank-2 solves, the quasi-diagonal update). Statistics can be computed once and
reused (or averaged across steps with :meth:`Curvature.blend`), which is what
:class:`fisherkit.optim.NaturalGradient` does with its ``ema`` and ``curvature_every`` options.
"""
from __future__ import annotations

from .methods import natural_gradient
from .statistics import ESTIMATORS, METHODS, Curvature, curvature, curvature_and_gradient, layer_inputs, unit_weights

__all__ = ["METHODS", "ESTIMATORS", "natural_gradient", "curvature", "curvature_and_gradient", "Curvature",
           "layer_inputs", "unit_weights"]
