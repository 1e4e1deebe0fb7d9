"""The whole default configuration tree.

Every key a config file may set is defined here (or added by a plugin through
``fastreid_ms.config.register_config_extension``). Values follow the MindSpore
model-zoo AlignedReID++ recipe unless noted.
"""
from .config import CfgNode as CN

_C = CN()

# Modules imported before a config file is merged: they register components and may
# add config keys (see projects/README.md).
_C.PLUGINS = []

# -----------------------------------------------------------------------------
# MODEL
# -----------------------------------------------------------------------------
_C.MODEL = CN()
# CPU, GPU or Ascend; the environment variable FASTREID_DEVICE overrides it.
_C.MODEL.DEVICE = "CPU"
# GRAPH (compiled, default) or PYNATIVE (eager, for debugging).
_C.MODEL.MODE = "GRAPH"
_C.MODEL.META_ARCHITECTURE = "Baseline"
# Children of the model frozen for the first SOLVER.FREEZE_ITERS iterations (e.g. ["backbone"]).
_C.MODEL.FREEZE_LAYERS = []
# Checkpoint of the whole model, for fine-tuning or --eval-only.
_C.MODEL.WEIGHTS = ""

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
_C.MODEL.BACKBONE.DEPTH = 50
# 2 as in the paper (256x128 input -> 8x4 feature map); 1 doubles the map.
_C.MODEL.BACKBONE.LAST_STRIDE = 2
_C.MODEL.BACKBONE.NORM = "BN"
# Channels of the backbone's output map (2048 for ResNet-50/101, 512 for 18/34).
_C.MODEL.BACKBONE.FEAT_DIM = 2048
# Width of the first stage (64 for the standard ResNets; smaller for tiny test models).
_C.MODEL.BACKBONE.BASE_WIDTH = 64
# ImageNet initialisation of the backbone when training starts (never downloaded): a
# model-zoo .ckpt, or a torchvision state as .npz / .safetensors. The recipe configs turn it
# on; the default path is where the README says to put the seed's model-zoo ResNet-50.
_C.MODEL.BACKBONE.PRETRAIN = False
_C.MODEL.BACKBONE.PRETRAIN_PATH = (
    "pretrained/resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93.44.ckpt")
# Numerics of the network the ImageNet weights were trained in:
#   "modelzoo"     the MindSpore model-zoo ResNet (the seed's checkpoint): pad_mode 'same'
#                  convolutions and stem max pool (a stride-2 layer on an even size pads 0
#                  before and 1 after), BN eps 1e-4;
#   "torchvision"  torchvision's ResNet: symmetric padding k // 2, BN eps 1e-5.
_C.MODEL.BACKBONE.CONVENTION = "modelzoo"
# IBN-a (instance + batch norm after the first convolution of the blocks of stages 1-3); its
# ImageNet weights (IBN-Net's resnet50_ibn_a, converted with tools/convert_torchvision.py)
# load through PRETRAIN_PATH with CONVENTION torchvision.
_C.MODEL.BACKBONE.WITH_IBN = False
# Non-local blocks after the last NL_LAYERS[i] residual blocks of stage i+1
# (AGW / SBS: [0, 2, 3, 0]).
_C.MODEL.BACKBONE.WITH_NL = False
_C.MODEL.BACKBONE.NL_LAYERS = [0, 2, 3, 0]

_C.MODEL.HEADS = CN()
_C.MODEL.HEADS.NAME = "EmbeddingHead"
# Filled from the training set when 0.
_C.MODEL.HEADS.NUM_CLASSES = 0
# 0: no embedding layer, the pooled backbone feature is the global feature.
_C.MODEL.HEADS.EMBEDDING_DIM = 0
# A POOLING_REGISTRY name (modeling/heads/pooling.py): avgpool, maxpool, GeneralizedMeanPooling
# (GeM, fixed p), GeneralizedMeanPoolingP (GeM, trained p), AdaptiveAvgMaxPool, ...
_C.MODEL.HEADS.POOL_LAYER = "avgpool"
# GeM's exponent p (the start value for GeneralizedMeanPoolingP).
_C.MODEL.HEADS.GEM_P = 3.0
# BN neck (bag of tricks): BN after pooling, classifier on the BN output.
_C.MODEL.HEADS.WITH_BNNECK = False
# Which feature is returned at test time with a BN neck: "before" or "after" the BN.
_C.MODEL.HEADS.NECK_FEAT = "before"
# Which feature the triplet (metric) losses see with a BN neck: "before" (bag of tricks) or
# "after" the BN (fast-reid's SBS).
_C.MODEL.HEADS.TRIPLET_FEAT = "before"
# "linear" (logits) or "cosine" (alias "CircleSoftmax": cosine similarities for CircleSoftmaxLoss).
_C.MODEL.HEADS.CLS_LAYER = "linear"

_C.MODEL.LOSSES = CN()
# Names in LOSS_REGISTRY; the training loss is the sum of their scaled values.
_C.MODEL.LOSSES.NAME = ["CrossEntropyLoss", "TripletLoss"]

_C.MODEL.LOSSES.CE = CN()
# Label smoothing epsilon (0 disables it).
_C.MODEL.LOSSES.CE.EPSILON = 0.1
_C.MODEL.LOSSES.CE.SCALE = 1.0

_C.MODEL.LOSSES.TRI = CN()
# Margin of the batch-hard triplet loss; 0 selects the soft margin log(1 + exp(.)).
_C.MODEL.LOSSES.TRI.MARGIN = 0.3
_C.MODEL.LOSSES.TRI.NORM_FEAT = False
_C.MODEL.LOSSES.TRI.HARD_MINING = True
_C.MODEL.LOSSES.TRI.SCALE = 1.0

_C.MODEL.LOSSES.CENTER = CN()
_C.MODEL.LOSSES.CENTER.SCALE = 5e-4

# CircleSoftmaxLoss: cross entropy on circle logits of the cosine classifier (SBS). GAMMA is
# the scale s (fast-reid's HEADS.SCALE), MARGIN m (HEADS.MARGIN), EPSILON label smoothing.
_C.MODEL.LOSSES.CIRCLE_SOFTMAX = CN()
_C.MODEL.LOSSES.CIRCLE_SOFTMAX.GAMMA = 64.0
_C.MODEL.LOSSES.CIRCLE_SOFTMAX.MARGIN = 0.35
_C.MODEL.LOSSES.CIRCLE_SOFTMAX.EPSILON = 0.1
_C.MODEL.LOSSES.CIRCLE_SOFTMAX.SCALE = 1.0

# CircleLoss: the pairwise circle loss on the global features.
_C.MODEL.LOSSES.CIRCLE = CN()
_C.MODEL.LOSSES.CIRCLE.GAMMA = 128.0
_C.MODEL.LOSSES.CIRCLE.MARGIN = 0.25
_C.MODEL.LOSSES.CIRCLE.SCALE = 1.0

# -----------------------------------------------------------------------------
# INPUT
# -----------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.SIZE_TRAIN = [256, 128]
_C.INPUT.SIZE_TEST = [256, 128]
# Per-channel mean / std on the 0-255 scale (ImageNet's).
_C.INPUT.PIXEL_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
_C.INPUT.PIXEL_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

_C.INPUT.FLIP = CN()
_C.INPUT.FLIP.ENABLED = True
_C.INPUT.FLIP.PROB = 0.5

# The seed's random translation: resize to SCALE x the size, then random crop back.
_C.INPUT.TRANSLATE = CN()
_C.INPUT.TRANSLATE.ENABLED = True
_C.INPUT.TRANSLATE.PROB = 0.5
_C.INPUT.TRANSLATE.SCALE = 1.125

# AutoAugment (Cubuk et al., the ImageNet policy) applied first, with probability PROB (SBS: 0.1).
_C.INPUT.AUTOAUG = CN()
_C.INPUT.AUTOAUG.ENABLED = False
_C.INPUT.AUTOAUG.PROB = 0.0

_C.INPUT.PADDING = CN()
_C.INPUT.PADDING.ENABLED = False
_C.INPUT.PADDING.SIZE = 10

# Random erasing (Zhong et al.): with probability PROB a rectangle of area AREA x H x W
# (uniform) and aspect ratio height / width in ASPECT is filled with VALUE.
_C.INPUT.REA = CN()
_C.INPUT.REA.ENABLED = True
_C.INPUT.REA.PROB = 0.5
_C.INPUT.REA.AREA = [0.02, 0.4]
_C.INPUT.REA.ASPECT = [0.3, 1 / 0.3]
#   "seed"   the seed's RandomErasing: one draw (no rectangle when it does not fit), aspect
#            uniform in ASPECT, applied after Normalize; VALUE in normalised units, default
#            (0.4914, 0.4822, 0.4465) as the seed writes into the normalised tensor;
#   "retry"  up to 100 draws until a rectangle fits, aspect log-uniform in ASPECT, applied
#            before Normalize; VALUE on the 0-255 scale, default the pixel mean (0 after
#            normalisation). fastreid_ms's erasing before the seed recipe was adopted.
_C.INPUT.REA.MODE = "seed"
# Fill per channel, in the units of MODE; [] means the MODE's default above.
_C.INPUT.REA.VALUE = []

# -----------------------------------------------------------------------------
# DATASETS
# -----------------------------------------------------------------------------
_C.DATASETS = CN()
_C.DATASETS.NAMES = ["Market1501"]
_C.DATASETS.TESTS = ["Market1501"]
# Folder holding the dataset folders (Market-1501-v15.09.15/, DukeMTMC-reID/, ...).
_C.DATASETS.ROOT = "datasets"
_C.DATASETS.CUHK03 = CN()
# "detected" or "labeled" boxes of CUHK03-NP.
_C.DATASETS.CUHK03.LABELED = False

# The generated dataset in Market1501 layout (DATASETS.NAMES ["Synthetic"]).
_C.DATASETS.SYNTHETIC = CN()
_C.DATASETS.SYNTHETIC.SEED = 0
_C.DATASETS.SYNTHETIC.NUM_TRAIN_IDS = 100
_C.DATASETS.SYNTHETIC.NUM_TEST_IDS = 100
_C.DATASETS.SYNTHETIC.IMAGES_PER_ID = 12
_C.DATASETS.SYNTHETIC.NUM_CAMERAS = 6
_C.DATASETS.SYNTHETIC.HEIGHT = 128
_C.DATASETS.SYNTHETIC.WIDTH = 64

# Your own images, no code (README "Your own data"). DATASETS.NAMES ["MarketFolder"]: the
# folder ROOT/FOLDER.NAME with Market1501-named images in the sub-folders TRAIN / QUERY /
# GALLERY (TRAIN "" for a test-only folder).
_C.DATASETS.FOLDER = CN()
_C.DATASETS.FOLDER.NAME = ""
_C.DATASETS.FOLDER.TRAIN = "bounding_box_train"
_C.DATASETS.FOLDER.QUERY = "query"
_C.DATASETS.FOLDER.GALLERY = "bounding_box_test"
# DATASETS.NAMES ["ListFiles"]: list files (relative to ROOT unless absolute) of lines
# "<image path> <person id> <camera id>"; image paths relative to IMAGE_ROOT ("" = ROOT).
_C.DATASETS.LISTS = CN()
_C.DATASETS.LISTS.TRAIN = ""
_C.DATASETS.LISTS.QUERY = ""
_C.DATASETS.LISTS.GALLERY = ""
_C.DATASETS.LISTS.IMAGE_ROOT = ""

# Partial variants: "<Name>-Partial" in NAMES / TESTS (e.g. "Market1501-Partial") is <Name>
# with the images of SPLITS cropped as the AlignedReID++ paper's Market1501-Partial: a crop
# height uniform in [HEIGHT_RANGE[0] h, HEIGHT_RANGE[1] h) and a uniform top, resized back.
# Each crop is a function of (SEED, the image's path under ROOT); crops are cached as PNG in
# CACHE_DIR ("" = OUTPUT_DIR/cache/partial), never in the dataset folder.
_C.DATASETS.PARTIAL = CN()
_C.DATASETS.PARTIAL.SPLITS = ["query"]
_C.DATASETS.PARTIAL.HEIGHT_RANGE = [0.6, 0.9]
_C.DATASETS.PARTIAL.SEED = 0
_C.DATASETS.PARTIAL.CACHE_DIR = ""

# -----------------------------------------------------------------------------
# DATALOADER
# -----------------------------------------------------------------------------
_C.DATALOADER = CN()
_C.DATALOADER.SAMPLER_TRAIN = "IdentitySampler"
# K images per identity in a training batch (P = IMS_PER_BATCH / K identities).
_C.DATALOADER.NUM_INSTANCE = 8
# Loader threads (decode + transforms; they release the GIL): -1 picks the CPUs this process
# may use divided among the training processes on this machine (logged; FASTREID_NUM_THREADS
# caps it, FASTREID_LOCAL_DEVICES tells the devices per machine on several machines),
# 0 loads in the training thread, N >= 1 uses N threads.
_C.DATALOADER.NUM_WORKERS = -1

# -----------------------------------------------------------------------------
# SOLVER
# -----------------------------------------------------------------------------
_C.SOLVER = CN()

_C.SOLVER.AMP = CN()
# O0 (float32, the seed's), O1, O2, O3; "auto" picks O0 on CPU (float16 is slower there)
# and O2 on GPU / Ascend.
_C.SOLVER.AMP.LEVEL = "O0"
# Dynamic loss scaling: start value, growth factor and window.
_C.SOLVER.AMP.INIT_SCALE = 65536.0
_C.SOLVER.AMP.SCALE_FACTOR = 2.0
_C.SOLVER.AMP.SCALE_WINDOW = 1000

_C.SOLVER.OPT = "Momentum"
_C.SOLVER.MAX_EPOCH = 300
_C.SOLVER.BASE_LR = 5e-2
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# Learning-rate multiplier for the head's parameters.
_C.SOLVER.HEADS_LR_FACTOR = 1.0
_C.SOLVER.MOMENTUM = 0.85
_C.SOLVER.NESTEROV = True
_C.SOLVER.WEIGHT_DECAY = 5e-4
# Weight decay of norm parameters (BN gamma / beta) and of biases. The seed's optimizer
# (MindSpore's default decay filter) decays every weight and bias but no gamma / beta, hence
# 0 for norms; set WEIGHT_DECAY_NORM 5e-4 to decay them too.
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.WEIGHT_DECAY_BIAS = 5e-4
# Adam / AdamW betas.
_C.SOLVER.BETAS = [0.9, 0.999]

# "CosineAnnealingLR" or "MultiStepLR", after the warm-up.
_C.SOLVER.SCHED = "CosineAnnealingLR"
_C.SOLVER.ETA_MIN_LR = 3.5e-6
_C.SOLVER.STEPS = [40, 90]
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_EPOCHS = 6
# "linear" from WARMUP_FACTOR x BASE_LR, or from WARMUP_START_LR when it is >= 0.
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.WARMUP_FACTOR = 0.0
_C.SOLVER.WARMUP_START_LR = -1.0
# > 0: the warm-up lasts this many iterations (fast-reid's unit) instead of WARMUP_EPOCHS.
_C.SOLVER.WARMUP_ITERS = 0
# Cosine only: the rate stays at BASE_LR until this epoch, then the cosine runs to MAX_EPOCH.
_C.SOLVER.DELAY_EPOCHS = 0
# The parameters under MODEL.FREEZE_LAYERS (name prefixes of the model's children, e.g.
# "backbone") get learning rate 0 for the first FREEZE_ITERS iterations (SBS: 1000).
_C.SOLVER.FREEZE_ITERS = 0

# Global batch (split across devices) = P identities x NUM_INSTANCE.
_C.SOLVER.IMS_PER_BATCH = 32
# Iterations per epoch; 0 means the sampler's length (one pass over the identities).
_C.SOLVER.ITERS_PER_EPOCH = 0
_C.SOLVER.CHECKPOINT_PERIOD = 20
_C.SOLVER.LOG_PERIOD = 20

# -----------------------------------------------------------------------------
# TEST
# -----------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.EVALUATOR = "ReidEvaluator"
# Evaluate every N epochs (0: only at the end).
_C.TEST.EVAL_PERIOD = 20
_C.TEST.IMS_PER_BATCH = 128
# "euclidean" or "cosine" for global features.
_C.TEST.METRIC = "euclidean"
# "market" (drop same id + same camera) or "cuhk03" (single-gallery-shot, 10 repeats).
_C.TEST.PROTOCOL = "market"
_C.TEST.MAX_RANK = 50
# Rows (queries) per block of the distance computations; bounds memory.
_C.TEST.BLOCK_SIZE = 1024

# Average the features of the image and its horizontal flip.
_C.TEST.FLIP = CN()
_C.TEST.FLIP.ENABLED = False

# Average query expansion.
_C.TEST.AQE = CN()
_C.TEST.AQE.ENABLED = False
_C.TEST.AQE.QE_TIME = 1
_C.TEST.AQE.QE_K = 5
_C.TEST.AQE.ALPHA = 3.0

_C.TEST.RERANK = CN()
_C.TEST.RERANK.ENABLED = False
_C.TEST.RERANK.K1 = 20
_C.TEST.RERANK.K2 = 6
_C.TEST.RERANK.LAMBDA = 0.3
# 0: exact k-reciprocal re-ranking; N > 0 (methods with a second, costly distance such as
# AlignedReID++'s DMLI): that distance is computed for each gallery sample's N nearest gallery
# samples by the global distance only. Memory is linear in the gallery size either way.
_C.TEST.RERANK.CANDIDATES = 0

# -----------------------------------------------------------------------------
# RECIPE: the published run a config reproduces. The trainer logs the run it is about to do
# next to this one and says how they differ (devices, global batch, K, epochs, hence the
# per-device batch, iterations per epoch and updates). NAME "" compares nothing.
# -----------------------------------------------------------------------------
_C.RECIPE = CN()
_C.RECIPE.NAME = ""
_C.RECIPE.NUM_DEVICES = 1
_C.RECIPE.IMS_PER_BATCH = 32
_C.RECIPE.NUM_INSTANCE = 8
_C.RECIPE.MAX_EPOCH = 300

# -----------------------------------------------------------------------------
# Misc
# -----------------------------------------------------------------------------
_C.OUTPUT_DIR = "logs/default"
# Negative: a random seed, logged.
_C.SEED = 0
