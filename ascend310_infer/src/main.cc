/**
 * Feature extraction with an exported fastreid_ms MINDIR on Ascend 310 (MindSpore C++ API).
 *
 * Input:  a folder of preprocessed images, one raw float32 file per image (C x H x W, already
 *         resized and normalised by ascend310_infer/preprocess.py), named "<stem>.bin".
 * Output: for every image and every model output k, "<output_path>/<stem>_<k>.bin" holding that
 *         image's slice of output k as raw float32 (k = 0: global feature (D,), k = 1: local
 *         features (P, C) for AlignedReID++; the order is fixed by
 *         fastreid_ms/modeling/export_wrapper.py), plus "<output_path>/output_shapes.txt" with one
 *         line "k d1 d2 ..." per output (the per-image shape, batch dimension dropped).
 *         ascend310_infer/infer_mindir.py writes exactly the same files from Python.
 *
 * The batch size is the model's: a MINDIR exported with --batch-size N takes N images per call
 * (the last call is padded with zeros, whose outputs are dropped); a dynamic-batch MINDIR
 * takes one image per call.
 *
 * Usage:
 *   fastreid_infer --mindir_path=model.mindir --input_path=bins/query --output_path=feats/query
 *                  [--device_id=0] [--device_target=Ascend310|CPU]
 *
 * API notes: the full MindSpore C++ inference package (1.x, 2.x) and mindspore-lite 2.x both
 * provide Serialization::Load, Model::Build(GraphCell, Context), Model::Predict and
 * `Ascend310DeviceInfo` (a class in MindSpore 1.x, an alias of AscendDeviceInfo in 2.x and in
 * mindspore-lite). Define FASTREID_USE_ASCEND_DEVICE_INFO where only AscendDeviceInfo exists.
 */
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"
#include "inc/utils.h"

using fastreid_infer::FileStem;
using fastreid_infer::JoinPath;
using fastreid_infer::ListBinFiles;
using fastreid_infer::MakeDirs;
using fastreid_infer::ReadFile;
using fastreid_infer::ShapeProduct;
using fastreid_infer::ShapeToString;
using fastreid_infer::WriteFileAtomic;
using fastreid_infer::WriteTextAtomic;

#ifdef FASTREID_USE_ASCEND_DEVICE_INFO
using Ascend310Info = mindspore::AscendDeviceInfo;
#else
using Ascend310Info = mindspore::Ascend310DeviceInfo;
#endif

namespace {

const char kUsage[] =
    "Usage: fastreid_infer --mindir_path=FILE --input_path=DIR --output_path=DIR\n"
    "                      [--device_id=N] [--device_target=Ascend310|CPU]\n"
    "  --mindir_path    model exported by tools/export.py --format MINDIR\n"
    "  --input_path     folder of <stem>.bin images written by ascend310_infer/preprocess.py\n"
    "  --output_path    folder receiving <stem>_<k>.bin features and output_shapes.txt\n"
    "  --device_id      Ascend device id (default 0, or $DEVICE_ID)\n"
    "  --device_target  Ascend310 (default) or CPU (where the runtime has a CPU backend)\n";

struct Options {
  std::string mindir_path;
  std::string input_path;
  std::string output_path;
  std::string device_target = "Ascend310";
  int device_id = 0;
};

// Accepts --key=value and --key value. Returns false (with a message) on an unknown flag.
bool ParseArgs(int argc, char **argv, Options *opt, std::string *error) {
  const char *env_id = std::getenv("DEVICE_ID");
  if (env_id != nullptr && *env_id != '\0') {
    opt->device_id = std::atoi(env_id);
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      *error = "";
      return false;
    }
    if (arg.rfind("--", 0) != 0) {
      *error = "unexpected argument '" + arg + "'";
      return false;
    }
    std::string key = arg.substr(2);
    std::string value;
    const size_t eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    static const char *kKnown[] = {"mindir_path", "input_path", "dataset_path", "output_path",
                                   "result_path", "device_id", "device_target"};
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      *error = "unknown flag --" + key;
      return false;
    }
    if (!inline_value) {
      if (i + 1 >= argc) {
        *error = "flag --" + key + " needs a value";
        return false;
      }
      value = argv[++i];
    }
    if (key == "mindir_path") {
      opt->mindir_path = value;
    } else if (key == "input_path" || key == "dataset_path") {
      opt->input_path = value;
    } else if (key == "output_path" || key == "result_path") {
      opt->output_path = value;
    } else if (key == "device_id") {
      opt->device_id = std::atoi(value.c_str());
    } else {
      opt->device_target = value;
    }
  }
  if (opt->mindir_path.empty() || opt->input_path.empty() || opt->output_path.empty()) {
    *error = "--mindir_path, --input_path and --output_path are required";
    return false;
  }
  if (opt->device_target != "Ascend310" && opt->device_target != "CPU") {
    *error = "--device_target must be Ascend310 or CPU, got '" + opt->device_target + "'";
    return false;
  }
  return true;
}

std::shared_ptr<mindspore::Context> MakeContext(const Options &opt) {
  auto context = std::make_shared<mindspore::Context>();
  if (opt.device_target == "CPU") {
    auto cpu = std::make_shared<mindspore::CPUDeviceInfo>();
    context->MutableDeviceInfo().push_back(cpu);
  } else {
    auto ascend = std::make_shared<Ascend310Info>();
    ascend->SetDeviceID(static_cast<uint32_t>(opt.device_id));
    context->MutableDeviceInfo().push_back(ascend);
  }
  return context;
}

int Fail(const std::string &message) {
  std::cerr << "[fastreid_infer] ERROR: " << message << std::endl;
  return 1;
}

}  // namespace

int Run(int argc, char **argv) {
  Options opt;
  std::string error;
  if (!ParseArgs(argc, argv, &opt, &error)) {
    if (!error.empty()) {
      std::cerr << "[fastreid_infer] ERROR: " << error << "\n";
    }
    std::cerr << kUsage;
    return error.empty() ? 0 : 2;
  }

  std::vector<std::string> files;
  if (!ListBinFiles(opt.input_path, &files)) {
    return Fail("cannot open the input folder '" + opt.input_path +
                "': pass the folder written by ascend310_infer/preprocess.py");
  }
  if (files.empty()) {
    return Fail("no .bin files in '" + opt.input_path + "': run ascend310_infer/preprocess.py first");
  }
  if (!MakeDirs(opt.output_path)) {
    return Fail("cannot create the output folder '" + opt.output_path + "'");
  }

  mindspore::Graph graph;
  mindspore::Status status = mindspore::Serialization::Load(opt.mindir_path, mindspore::ModelType::kMindIR, &graph);
  if (status != mindspore::kSuccess) {
    return Fail("cannot load the MINDIR '" + opt.mindir_path + "': " + status.ToString() +
                " (export it with tools/export.py --format MINDIR)");
  }
  mindspore::Model model;
  status = model.Build(mindspore::GraphCell(graph), MakeContext(opt));
  if (status != mindspore::kSuccess) {
    return Fail("building the model on " + opt.device_target + " failed: " + status.ToString());
  }

  std::vector<mindspore::MSTensor> model_inputs = model.GetInputs();
  if (model_inputs.size() != 1) {
    return Fail("the model has " + std::to_string(model_inputs.size()) +
                " inputs; a fastreid_ms export has exactly one (the images)");
  }
  std::vector<int64_t> input_shape = model_inputs[0].Shape();
  if (input_shape.size() != 4) {
    return Fail("expected an NCHW image input, the model's input is " + ShapeToString(input_shape));
  }
  const int64_t batch = input_shape[0] > 0 ? input_shape[0] : 1;
  input_shape[0] = batch;
  std::vector<int64_t> image_shape(input_shape.begin() + 1, input_shape.end());
  const int64_t image_elems = ShapeProduct(image_shape);
  if (image_elems <= 0) {
    return Fail("the model's input has unknown image dimensions " + ShapeToString(input_shape) +
                ": export with a fixed INPUT.SIZE_TEST");
  }
  const size_t image_bytes = static_cast<size_t>(image_elems) * sizeof(float);
  std::cout << "[fastreid_infer] " << files.size() << " images, model input " << ShapeToString(input_shape)
            << " on " << opt.device_target << std::endl;

  std::vector<float> batch_data(static_cast<size_t>(batch * image_elems), 0.0f);
  std::vector<char> file_data;
  bool shapes_written = false;
  for (size_t start = 0; start < files.size(); start += static_cast<size_t>(batch)) {
    const size_t count = std::min(files.size() - start, static_cast<size_t>(batch));
    std::fill(batch_data.begin(), batch_data.end(), 0.0f);
    for (size_t j = 0; j < count; ++j) {
      const std::string &path = files[start + j];
      if (!ReadFile(path, &file_data)) {
        return Fail("cannot read '" + path + "'");
      }
      if (file_data.size() != image_bytes) {
        return Fail("'" + path + "' has " + std::to_string(file_data.size()) + " bytes, the model expects " +
                    std::to_string(image_bytes) + " (float32 " + ShapeToString(image_shape) +
                    "): preprocess with the export's INPUT.SIZE_TEST");
      }
      std::memcpy(batch_data.data() + j * static_cast<size_t>(image_elems), file_data.data(), image_bytes);
    }
    std::vector<mindspore::MSTensor> inputs;
    inputs.emplace_back(model_inputs[0].Name(), mindspore::DataType::kNumberTypeFloat32, input_shape,
                        batch_data.data(), batch_data.size() * sizeof(float));
    std::vector<mindspore::MSTensor> outputs;
    status = model.Predict(inputs, &outputs);
    if (status != mindspore::kSuccess) {
      return Fail("Predict failed on the batch starting at '" + files[start] + "': " + status.ToString());
    }
    std::ostringstream shapes;
    for (size_t k = 0; k < outputs.size(); ++k) {
      const std::vector<int64_t> &out_shape = outputs[k].Shape();
      if (out_shape.empty() || out_shape[0] != batch) {
        return Fail("output " + std::to_string(k) + " has shape " + ShapeToString(out_shape) +
                    "; its first dimension must be the batch (" + std::to_string(batch) + ")");
      }
      if (outputs[k].DataType() != mindspore::DataType::kNumberTypeFloat32) {
        return Fail("output " + std::to_string(k) + " is not float32");
      }
      const size_t per_image = outputs[k].DataSize() / static_cast<size_t>(batch);
      std::shared_ptr<const void> data = outputs[k].Data();
      const char *bytes = static_cast<const char *>(data.get());
      for (size_t j = 0; j < count; ++j) {
        const std::string out_file = JoinPath(opt.output_path, FileStem(files[start + j]) + "_" +
                                                                   std::to_string(k) + ".bin");
        if (!WriteFileAtomic(out_file, bytes + j * per_image, per_image)) {
          return Fail("cannot write '" + out_file + "'");
        }
      }
      shapes << k;
      for (size_t d = 1; d < out_shape.size(); ++d) {
        shapes << " " << out_shape[d];
      }
      shapes << "\n";
    }
    if (!shapes_written) {
      if (!WriteTextAtomic(JoinPath(opt.output_path, "output_shapes.txt"), shapes.str())) {
        return Fail("cannot write output_shapes.txt in '" + opt.output_path + "'");
      }
      shapes_written = true;
    }
  }
  std::cout << "[fastreid_infer] wrote features of " << files.size() << " images to " << opt.output_path
            << std::endl;
  return 0;
}

int main(int argc, char **argv) {
  // The runtime reports some failures (e.g. a MINDIR newer than the runtime) by throwing.
  try {
    return Run(argc, argv);
  } catch (const std::exception &e) {
    return Fail(std::string("MindSpore runtime error: ") + e.what());
  }
}
