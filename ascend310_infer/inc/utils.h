/**
 * File helpers of the Ascend 310 feature extractor (ascend310_infer/src/main.cc).
 *
 * Everything here is plain C++17 and independent of the MindSpore headers, so that the
 * helpers can be reasoned about (and compiled) without the inference toolkit.
 */
#ifndef FASTREID_MS_ASCEND310_INFER_UTILS_H_
#define FASTREID_MS_ASCEND310_INFER_UTILS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fastreid_infer {

/// Sorted full paths of the regular files ending in ".bin" directly inside `dir`.
/// Returns false (and leaves `files` empty) when `dir` cannot be opened.
bool ListBinFiles(const std::string &dir, std::vector<std::string> *files);

/// The file name without its folder and without the last extension: "/a/b/x_c1.bin" -> "x_c1".
std::string FileStem(const std::string &path);

/// Reads the whole file into `data`. Returns false when it cannot be read.
bool ReadFile(const std::string &path, std::vector<char> *data);

/// Writes `size` bytes atomically: to "<path>.tmp" first, then renamed onto `path`.
bool WriteFileAtomic(const std::string &path, const void *data, size_t size);

/// Writes a text file atomically.
bool WriteTextAtomic(const std::string &path, const std::string &text);

/// Creates `dir` and its parents (like mkdir -p). Returns false on failure.
bool MakeDirs(const std::string &dir);

/// Joins a folder and a file name with exactly one '/'.
std::string JoinPath(const std::string &dir, const std::string &name);

/// Product of the dimensions (1 for an empty shape); negative when a dimension is unknown.
int64_t ShapeProduct(const std::vector<int64_t> &shape);

/// "1,3,256,128" -> "1x3x256x128".
std::string ShapeToString(const std::vector<int64_t> &shape);

}  // namespace fastreid_infer

#endif  // FASTREID_MS_ASCEND310_INFER_UTILS_H_
