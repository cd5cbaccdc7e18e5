// An MLP over views of its weights: validation and the layout (mlp.hpp). The passes over it
// are in passes/ (one algorithm for both devices).
#include "fisherkit/mlp.hpp"

#include <string>
#include <vector>

namespace fisherkit {

template <class T>
Mlp<T>::Mlp(std::vector<Layer<T>> layers, std::vector<Activation> activations)
    : layers_(std::move(layers)), activations_(std::move(activations)) {
  FISHERKIT_CHECK(!layers_.empty(), "argument 'layers' is empty; an MLP needs at least one layer");
  FISHERKIT_CHECK(activations_.size() + 1 == layers_.size(), "argument 'activations' must have ",
                  layers_.size() - 1, " entries (one per hidden layer), got ", activations_.size());
  widths_.push_back(layers_[0].weight.cols);
  device_ = layers_[0].weight.device;
  std::vector<LayerDims> dims;
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& W = layers_[l].weight;
    const auto& b = layers_[l].bias;
    const bool bias = b.data != nullptr;
    const std::string wn = "layers[" + std::to_string(l) + "].weight";
    const std::string bn = "layers[" + std::to_string(l) + "].bias";
    FISHERKIT_CHECK(W.device == device_ && (!bias || b.device == device_), "arguments 'layers[0].weight' and '",
                    W.device != device_ ? wn : bn, "' live on different devices (",
                    device_ == Device::cuda ? "GPU" : "host", " and ", device_ == Device::cuda ? "host" : "GPU",
                    "); an MLP's weights must all be on one");
    FISHERKIT_CHECK(W.rows > 0 && W.cols > 0, "argument '", wn, "' must be non-empty, got shape (", W.rows, ", ",
                    W.cols, ")");
    FISHERKIT_CHECK(W.col_stride == 1 || W.cols == 1, "argument '", wn, "' must have unit column stride (row-major)");
    FISHERKIT_CHECK(W.cols == widths_.back(), "layer shapes do not chain: '", wn, "' has ", W.cols,
                    " columns but the previous layer has ", widths_.back(), " outputs");
    FISHERKIT_CHECK(!bias || b.size == W.rows, "argument '", bn, "' must have ", W.rows, " entries (rows of ", wn,
                    "), got ", b.size);
    FISHERKIT_CHECK(bias || b.size == 0, "argument '", bn, "' has no data but ", b.size, " entries");
    FISHERKIT_CHECK(W.rows == 1 || W.row_stride >= W.cols, "argument '", wn, "' has overlapping rows (row_stride=",
                    W.row_stride, " < cols=", W.cols, ")");
    if (W.rows == 1) W.row_stride = W.cols;  // any stride is valid for one row
    widths_.push_back(W.rows);
    dims.push_back(LayerDims{W.rows, W.cols, bias});
  }
  layout_ = Layout(std::move(dims));
}

template class Mlp<float>;
template class Mlp<double>;

}  // namespace fisherkit
