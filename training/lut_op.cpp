/* The native CPU lookup as a torch operator with its own autograd node (LookupBackward), so a LUT layer's
 * forward and backward passes cost one C++ call each, without a Python autograd.Function around them; the
 * node is attached to the output directly, as torch's own operators do, which costs less than
 * torch::autograd::Function's general machinery.
 *
 * The arithmetic is lut_kernel.c's (compiled into this library), which does the float operations of
 * training/lut.py's pure-torch path in the same order: both paths give bit-identical results. Build it
 * with -ffp-contract=off (training/native.py does). LUTNET_OPS names the operator namespace; it carries
 * the build's key, so two builds never register the same namespace in one process.
 *
 * Operators:
 *   lookup(x, table, lo, step, nearest, clamp, fused) -> y    differentiable in x and table
 *   add_smoothness_gradients_(grads, tables, weight)          grads[i] += weight * d TV2(tables[i]) / d tables[i]
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <algorithm>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

extern "C" {
#include "lut_kernel.c"
}

#ifndef LUTNET_OPS
#error "compile with -DLUTNET_OPS=<operator namespace>"
#endif

namespace {


/* (batch, channels, inner) of [B, C] or [B, C, H, W]: the kernel's element layout. */
struct Layout {
  int64_t batch, channels, inner;
  explicit Layout(const at::Tensor &x)
      : batch(x.size(0)), channels(x.size(1)), inner(x.numel() / std::max<int64_t>(x.size(0) * x.size(1), 1)) {}
};

void check(const at::Tensor &x, const at::Tensor &table, const at::Tensor &lo, const at::Tensor &step) {
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              "lookup: x must be a float32 or float64 CPU tensor, got ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK(x.dim() == 2 || x.dim() == 4, "lookup: x must be [B, C] or [B, C, H, W], got ", x.sizes());
  TORCH_CHECK(table.scalar_type() == x.scalar_type() && lo.scalar_type() == x.scalar_type() && step.scalar_type() == x.scalar_type(),
              "lookup: table, lo and step must have x's dtype ", x.scalar_type());
  TORCH_CHECK(table.dim() == 2 && table.size(1) >= 3 && (table.size(0) == 1 || table.size(0) == x.size(1)),
              "lookup: table must be [C or 1, K+1] with K >= 2, got ", table.sizes(), " for x ", x.sizes());
  TORCH_CHECK(lo.is_contiguous() && step.is_contiguous() && lo.numel() == table.size(0) && step.numel() == table.size(0),
              "lookup: lo and step must be contiguous with one value per table row");
}

/* The forward pass: y, and into `ints` / `reals` what the backward pass needs. */
at::Tensor forward_compute(const at::Tensor &x, const at::Tensor &table, const at::Tensor &lo, const at::Tensor &step, bool nearest,
                           bool clamp, bool fused, at::Tensor *ints_out, at::Tensor *reals_out) {
  const Layout n(x);
  const int64_t count = x.numel(), rows = table.size(0), bins = table.size(1) - 1;
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor reals = at::empty({2, count}, x.options());
  at::Tensor ints = at::empty({nearest ? 2 : 1, count}, x.options().dtype(at::kInt));
  int32_t *knot = ints.data_ptr<int32_t>();
  if (x.scalar_type() == at::kFloat) {
    float *r = reals.data_ptr<float>();
    lut_forward_float32(x.data_ptr<float>(), table.data_ptr<float>(), lo.data_ptr<float>(), step.data_ptr<float>(), n.batch,
                        n.channels, n.inner, rows, bins, nearest, clamp, fused, y.data_ptr<float>(), knot,
                        nearest ? knot + count : nullptr, r, r + count);
  } else {
    double *r = reals.data_ptr<double>();
    lut_forward_float64(x.data_ptr<double>(), table.data_ptr<double>(), lo.data_ptr<double>(), step.data_ptr<double>(), n.batch,
                        n.channels, n.inner, rows, bins, nearest, clamp, fused, y.data_ptr<double>(), knot,
                        nearest ? knot + count : nullptr, r, r + count);
  }
  *ints_out = ints;
  *reals_out = reals;
  return y;
}

struct LookupBackward : public torch::autograd::Node {
  torch::autograd::SavedVariable ints_, reals_, step_;
  int64_t rows_ = 0, bins_ = 0;
  bool nearest_ = false, clamp_ = false;

  torch::autograd::variable_list apply(torch::autograd::variable_list &&grads) override {
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor()};  /* no gradient flows in: none flows out */
    const at::Tensor ints = ints_.unpack(), reals = reals_.unpack(), step = step_.unpack();
    const at::Tensor grad = grads[0].contiguous();
    const int64_t count = grad.numel();
    const Layout n(grad);
    const bool needs_x = should_compute_output(0), needs_table = should_compute_output(1);
    at::Tensor grad_x = needs_x ? at::empty_like(grad) : at::Tensor();
    at::Tensor grad_table = needs_table ? at::empty({rows_, bins_ + 1}, grad.options()) : at::Tensor();
    const int32_t *knot = ints.data_ptr<int32_t>();
    if (grad.scalar_type() == at::kFloat) {
      const float *r = reals.data_ptr<float>();
      lut_backward_float32(grad.data_ptr<float>(), knot, nearest_ ? knot + count : nullptr, r, r + count, step.data_ptr<float>(), n.batch,
                           n.channels, n.inner, rows_, bins_, nearest_, clamp_, needs_x ? grad_x.data_ptr<float>() : nullptr,
                           needs_table ? grad_table.data_ptr<float>() : nullptr);
    } else {
      const double *r = reals.data_ptr<double>();
      lut_backward_float64(grad.data_ptr<double>(), knot, nearest_ ? knot + count : nullptr, r, r + count, step.data_ptr<double>(), n.batch,
                           n.channels, n.inner, rows_, bins_, nearest_, clamp_, needs_x ? grad_x.data_ptr<double>() : nullptr,
                           needs_table ? grad_table.data_ptr<double>() : nullptr);
    }
    return {grad_x, grad_table};
  }
  std::string name() const override { return "LutLookupBackward"; }
  void release_variables() override {
    ints_.reset_data();
    reals_.reset_data();
    step_.reset_data();
  }
};

at::Tensor lookup(const at::Tensor &input, const at::Tensor &knots, const at::Tensor &lo, const at::Tensor &step, bool nearest, bool clamp,
                  bool fused) {
  check(input, knots, lo, step);
  const at::Tensor x = input.contiguous(), table = knots.contiguous();
  at::Tensor ints, reals;
  at::Tensor y = forward_compute(x, table, lo, step, nearest, clamp, fused, &ints, &reals);
  if (torch::autograd::compute_requires_grad(input, knots)) {
    auto node = c10::make_intrusive<LookupBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(input, knots));
    node->ints_ = torch::autograd::SavedVariable(ints, false);
    node->reals_ = torch::autograd::SavedVariable(reals, false);
    node->step_ = torch::autograd::SavedVariable(step, false);
    node->rows_ = table.size(0);
    node->bins_ = table.size(1) - 1;
    node->nearest_ = nearest;
    node->clamp_ = clamp;
    torch::autograd::set_history(y, node);
  }
  return y;
}

/* The TV2 (sub)gradient of a contiguous [R, K+1] table, as lut_smoothness_gradient_* computes it. */
at::Tensor smoothness_gradient(const at::Tensor &table) {
  TORCH_CHECK(table.device().is_cpu() && table.dim() == 2 && table.is_contiguous() &&
                  (table.scalar_type() == at::kFloat || table.scalar_type() == at::kDouble),
              "smoothness_gradient: table must be a contiguous float32/float64 CPU [R, K+1] tensor");
  at::Tensor gradient = at::empty_like(table);
  if (table.scalar_type() == at::kFloat)
    lut_smoothness_gradient_float32(table.data_ptr<float>(), table.size(0), table.size(1) - 1, gradient.data_ptr<float>());
  else
    lut_smoothness_gradient_float64(table.data_ptr<double>(), table.size(0), table.size(1) - 1, gradient.data_ptr<double>());
  return gradient;
}

/* grads[i] += weight * smoothness_gradient(tables[i]) for every table, as torch's add_(gradient, alpha=weight) rounds it. */
void add_smoothness_gradients_(at::TensorList grads, at::TensorList tables, double weight) {
  TORCH_CHECK(grads.size() == tables.size(), "add_smoothness_gradients_: one gradient per table");
  for (size_t i = 0; i < tables.size(); i++) {
    at::Tensor grad = grads[i];
    grad.add_(smoothness_gradient(tables[i]), weight);
  }
}

}  // namespace

TORCH_LIBRARY(LUTNET_OPS, m) {
  m.def("lookup(Tensor x, Tensor table, Tensor lo, Tensor step, bool nearest, bool clamp, bool fused) -> Tensor", &lookup);
  m.def("smoothness_gradient(Tensor table) -> Tensor", &smoothness_gradient);
  m.def("add_smoothness_gradients_(Tensor(a!)[] grads, Tensor[] tables, float weight) -> ()", &add_smoothness_gradients_);
}
