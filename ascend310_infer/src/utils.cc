/**
 * File helpers of the Ascend 310 feature extractor; see inc/utils.h.
 */
#include "inc/utils.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace fastreid_infer {

namespace {

bool EndsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool IsRegularFile(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

bool ListBinFiles(const std::string &dir, std::vector<std::string> *files) {
  files->clear();
  DIR *handle = opendir(dir.c_str());
  if (handle == nullptr) {
    return false;
  }
  for (struct dirent *entry = readdir(handle); entry != nullptr; entry = readdir(handle)) {
    const std::string name = entry->d_name;
    if (name.empty() || name[0] == '.' || !EndsWith(name, ".bin")) {
      continue;
    }
    const std::string full = JoinPath(dir, name);
    if (IsRegularFile(full)) {
      files->push_back(full);
    }
  }
  closedir(handle);
  std::sort(files->begin(), files->end());
  return true;
}

std::string FileStem(const std::string &path) {
  const size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = name.find_last_of('.');
  if (dot != std::string::npos && dot > 0) {
    name = name.substr(0, dot);
  }
  return name;
}

bool ReadFile(const std::string &path, std::vector<char> *data) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    return false;
  }
  const std::streamsize size = in.tellg();
  if (size < 0) {
    return false;
  }
  in.seekg(0, std::ios::beg);
  data->resize(static_cast<size_t>(size));
  return size == 0 || static_cast<bool>(in.read(data->data(), size));
}

bool WriteFileAtomic(const std::string &path, const void *data, size_t size) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return false;
    }
    out.write(static_cast<const char *>(data), static_cast<std::streamsize>(size));
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

bool WriteTextAtomic(const std::string &path, const std::string &text) {
  return WriteFileAtomic(path, text.data(), text.size());
}

bool MakeDirs(const std::string &dir) {
  if (dir.empty() || IsDirectory(dir)) {
    return true;
  }
  const size_t slash = dir.find_last_of('/', dir.size() > 1 ? dir.size() - 2 : 0);
  if (slash != std::string::npos && slash > 0 && !MakeDirs(dir.substr(0, slash))) {
    return false;
  }
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return false;
  }
  return IsDirectory(dir);
}

std::string JoinPath(const std::string &dir, const std::string &name) {
  if (dir.empty()) {
    return name;
  }
  if (dir.back() == '/') {
    return dir + name;
  }
  return dir + "/" + name;
}

int64_t ShapeProduct(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return -1;
    }
    n *= d;
  }
  return n;
}

std::string ShapeToString(const std::vector<int64_t> &shape) {
  std::ostringstream s;
  for (size_t i = 0; i < shape.size(); ++i) {
    s << (i ? "x" : "") << shape[i];
  }
  return s.str();
}

}  // namespace fastreid_infer
