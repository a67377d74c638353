"""The full set of config keys with their defaults.

An experiment file starts from `get_base_config()`, changes what its question needs, and returns
`config.lock()`-ed, so a misspelt key in the file or on the command line fails instead of being
silently ignored. Every duration, size and class count used in training comes from here or from
the data, never from constants in the training code.
"""

import ml_collections

from medjax.errors import ConfigError


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Keys whose values may differ between runs trained together in one compiled program
    # (medjax.train.vectorize): ("seed",) lets a sweep stack its seeds; also
    # optimizer.learning_rate, optimizer.weight_decay, loss.label_smoothing.
    c.vectorize = ()

    c.data = ml_collections.ConfigDict()
    # phantom, medmnist, image_folder, csv, dicom, nifti, tfds (medjax.data.SOURCES)
    c.data.source = "phantom"
    c.data.name = "phantom"  # medmnist: finds $MEDJAX_DATA_DIR/<name>[_<size>].npz; tfds: dataset
    c.data.path = ""  # file or folder: .npz, image root, CSV manifest, DICOM/NIfTI root, TFDS dir
    c.data.image_size = 28  # phantom: generated size; medmnist: checked; files: decoded to it
    c.data.depth = 0  # volumes (nifti, MedMNIST 3D): slices after resampling; 0 = 2D images
    c.data.channels = 1
    # Files: how decoded images of any size reach image_size x image_size (PIL resampling):
    # "resize" (stretch), "pad" (keep aspect, pad to square, then resize)
    c.data.fit = "pad"
    c.data.slice_axis = -1  # nifti: >= 0 turns volumes into 2D slices along this axis
    c.data.dicom_window = "file"  # file (the file's own window), none, or "center,width"
    # CSV manifest columns (image_folder and dicom also read a manifest when path is a .csv)
    c.data.path_column = "path"
    c.data.label_column = "label"
    c.data.patient_column = "patient_id"  # optional; splits never share a patient
    c.data.split_column = "split"  # optional; train/val/test per row
    c.data.on_error = "raise"  # raise, or skip (a warning per bad file and a count)
    c.data.max_pixels = 89_478_485  # refuse larger images (decompression bombs; PIL's limit)
    # PNG/JPEG/BMP/TIFF pixel scale, per file: auto (every file 0-255; 16-bit ones / 257 as
    # float32), 8 (uint8 0-255) or 16 (uint16 0-65535; 8-bit ones x 257). medjax.data.decode
    c.data.bit_depth = "auto"
    # Splits for data without official ones: stratified by class, grouped by patient when ids
    # exist. num_folds > 1: k-fold cross-validation over train+val, fold picks the val fold.
    c.data.split_fractions = (0.7, 0.1, 0.2)  # train, val, test
    c.data.split_seed = 0
    c.data.num_folds = 0
    c.data.fold = 0
    c.data.cache = True  # decoded, preprocessed splits reused across runs
    c.data.cache_dir = ""  # "" = $MEDJAX_CACHE_DIR or ~/.cache/medjax
    c.data.sampler = "shuffle"  # shuffle (each image once per epoch), balanced (classes equal)
    # synthetic minority images, train only: "smote(k=5)" (medjax.data.imbalance) or
    # "gan(steps=2000)" (a class-conditional GAN, medjax.data.generative)
    c.data.oversample = ""
    c.data.num_classes = 2  # phantom only; other sources read it from the data
    c.data.modality = "ultrasound"  # phantom noise model: xray (Poisson), ultrasound, mri (Rician)
    c.data.num_train = 2048  # phantom split sizes
    c.data.num_val = 512
    c.data.num_test = 512
    c.data.max_examples_per_split = 0  # 0 keeps all; :runlocal uses a few hundred
    # Ordered op lists, each entry "name(arg=value, ...)" (see medjax.ops). Preprocessing runs
    # once per example on the host; augmentation runs on the device inside the train step.
    c.data.preprocess = ("value_range(min=-1.0, max=1.0)",)
    # After preprocessing, training values far outside the range the ops promise (e.g. 16-bit
    # pixels through value_range's default in_max=255): raise, warn or off. NaN/inf always fail.
    c.data.range_check = "raise"
    c.data.augment = ()
    c.data.mix = ""  # batch-level label mixing on the device: "mixup(alpha=0.2)", "cutmix()"
    # Per-class augmentation (medjax.ops.per_class; issue 15, DARI-style): "CLASS: op(...)"
    # entries, CLASS an index or name; run after data.augment on that class's examples only.
    c.data.augment_per_class = ()
    c.data.augment_per_class_mode = "after"  # after data.augment, or instead of it

    # A segmentation prior (medjax.segment): a segmenter trained first on the training
    # split's masks (WORKDIR/segmenter), whose predicted masks then crop each image or join
    # it as a channel before the classifier trains. Needs masks: the phantom source's, or
    # image_folder / csv masks (data.mask_column, or <name>_mask.png beside each image).
    c.data.mask_column = ""  # CSV column of mask file paths ("" = <image stem>_mask.png files)
    c.segment = ml_collections.ConfigDict()
    c.segment.model = ""  # "" = no prior; unet, fcn, deeplabv3, deeplabv3plus
    c.segment.widths = (16, 32, 64)  # one encoder / backbone stage per width
    c.segment.atrous_rates = (6, 12, 18)  # deeplab ASPP rates (the paper's, at stride 16)
    c.segment.activation = "relu"  # by name, as config.model.activation
    c.segment.norm = "batch"  # by name, as config.model.norm
    c.segment.steps = 300  # training steps of the segmenter
    c.segment.batch_size = 32
    c.segment.learning_rate = 1e-3  # Adam, cosine decay over segment.steps
    c.segment.dice_weight = 1.0  # loss = pixel cross-entropy + dice_weight * (1 - soft Dice)
    c.segment.eval_every_steps = 50  # val Dice (selects the checkpoint) and a checkpoint
    c.segment.threshold = 0.5  # foreground probability at which a pixel joins the mask
    c.segment.use = "crop"  # crop (to the mask's box, resized back) or channel (mask appended)
    c.segment.margin = 0.1  # crop: added on each side of the box, as a fraction of its side

    c.model = ml_collections.ConfigDict()
    c.model.name = "cnn"  # see medjax.models.MODELS.names() and the README's model table
    c.model.activation = "relu"
    c.model.norm = "batch"
    c.model.dropout = 0.0
    # auto (small for <= 64 px; volumes: depth), small, imagenet; ViT has no stem
    c.model.stem = "auto"
    c.model.widths = (32, 64, 128)  # cnn: one conv stage per width
    c.model.convs_per_stage = 2  # cnn
    c.model.kernel_size = 3  # cnn
    c.model.pool = "max"  # cnn: downsampling between stages (max, avg)
    c.model.dtype = "float32"  # compute dtype; bfloat16 = mixed precision with float32 params
    c.model.stochastic_depth = 0.0  # efficientnet: drop-path rate (0.2 in the paper)
    c.model.width_multiplier = 1.0  # mobilenet_v2: channel scaling
    c.model.patch_size = 16  # vit: square patch side in pixels
    c.model.rnn = "lstm"  # cnn_rnn: lstm or gru over the slices of a volume
    c.model.rnn_hidden = 128  # cnn_rnn; conv_lstm: the ConvLSTM's channels
    # Recurrent and attention variants (issue 15 item 11; conv_lstm also reads rnn_hidden and
    # the cnn keys): the transformer of vit_conv_stem and cnn_attention, ViT_C-1GF's by default.
    c.model.transformer_width = 192  # vit_conv_stem, cnn_attention: token width
    c.model.transformer_depth = 11  # vit_conv_stem, cnn_attention: encoder blocks
    c.model.transformer_heads = 3  # vit_conv_stem, cnn_attention: attention heads
    c.model.members = ()  # ensemble: names of the backbone models, e.g. ("resnet18", "densenet121")
    c.model.combine = "mean"  # ensemble: mean (of member features) or concat
    # ensemble: a weights file per member ("" = none), aligned with members; each is loaded
    # into that member's subtree as config.model.pretrained would load it into the model alone
    c.model.member_pretrained = ()
    # Weights file to start from: a torchvision state_dict (.pth) or a Keras .keras/.h5 file
    c.model.pretrained = ""
    c.model.pretrained_source = "torchvision"  # torchvision or keras
    # Architecture variant: torchvision, or keras (keras.applications' ResNet v1 strides, TF
    # "SAME" padding, batch-norm epsilons, VGG's channel-last flatten), which Keras weights need
    c.model.layout = "torchvision"
    # Regexes over parameter paths ("stage1_block0/conv1/kernel") to freeze, with their
    # batch-norm statistics: "^(?!head)" trains only the head.
    c.model.freeze = ()
    c.model.conv = "auto"  # 2D/depthwise/3D convs: gemm (CPU forms), xla (lax.conv), auto
    # two_branch (late fusion of image and feature channels, e.g. from sobel() or dwt()):
    c.model.branches = ("cnn", "cnn")  # two_branch: backbones for the image, then the features
    c.model.branch_channels = 1  # two_branch: leading input channels that are the image
    # The classifier on the "pooled" features (medjax.heads): linear (the network's own), mlp
    # (the network's own, with hidden layers head_hidden), or one fitted after training on the
    # trained network's features: svm (RBF), svm_linear, logreg, rf, knn, elm.
    c.model.head = "linear"
    c.model.head_hidden = ()  # widths of the MLP head's hidden layers, e.g. (512, 256)

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"  # see medjax.train.optimizers
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "constant"  # constant, cosine, warmup_cosine
    c.optimizer.warmup_epochs = 0.0
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.9  # sgd, nesterov, rmsprop, lars
    c.optimizer.grad_clip_norm = 0.0  # 0 disables
    c.optimizer.head_learning_rate = 0.0  # > 0: the head's own learning rate (same schedule)

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "softmax_xent"
    c.loss.label_smoothing = 0.0
    # none, balanced (inverse frequency), effective (effective number, Cui et al. 2019); from
    # the train split only
    c.loss.class_weights = "none"
    c.loss.effective_beta = 0.999  # class_weights="effective"
    c.loss.focal_gamma = 2.0  # loss.name="focal"

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 128
    c.train.num_epochs = 10.0  # the run's length; num_steps > 0 takes precedence
    c.train.num_steps = 0
    c.train.log_every_steps = 20
    c.train.eval_every_epochs = 1.0
    c.train.ema_decay = 0.0  # > 0: evaluate an exponential moving average of the weights
    c.train.keep_checkpoints = 2  # the last K are kept, and the best by select_metric
    # An evaluation saves a checkpoint when validation improves, at the end, and otherwise
    # when this long has passed since the last one (what an interrupted run redoes at most;
    # Ctrl-C saves first). 0: at every evaluation. Results do not depend on it.
    c.train.checkpoint_every_minutes = 2.0
    c.train.select_metric = "auc"  # validation metric that picks the checkpoint tested
    c.train.select_mode = "max"
    # Batch-norm statistics recomputed before each validation and the test, with the weights as
    # they are, over training images that went through preprocessing only (medjax.train.
    # precise_bn): on, off, or auto (on when augmentation resamples, changes intensities or
    # mixes; a model without batch norm has nothing to recompute).
    c.train.precise_bn = "auto"
    c.train.precise_bn_images = 1024  # whole training batches, up to the training split
    # > 1: each update's gradient summed over this many micro-batches of batch_size / N images
    # (medjax.train.accumulate): the same update in less device memory
    c.train.grad_accum_steps = 1

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 256
    c.eval.bootstrap_samples = 1000
    c.eval.flip_tta = False  # average predictions with the left-right mirrored image
    c.eval.positive_class = 1  # binary tasks: the class whose sensitivity is reported
    # The chosen checkpoint is also evaluated on validation images passed through the training
    # augmentation; a difference over gap_margin in accuracy, balanced accuracy or AUC is a
    # warning (results.json "warnings"), as is a balanced accuracy over decision_margin below a
    # high AUC (medjax.train.consistency).
    c.eval.gap_check = True
    c.eval.gap_margin = 0.03
    c.eval.decision_margin = 0.15
    # Expected calibration error of the top-class confidence: equal-width bins over [0, 1]
    c.eval.ece_bins = 15
    # Binary tasks: a threshold on the positive class's (uncalibrated) probability, chosen on
    # validation only and reported beside the argmax (results.json "operating_point"): youden
    # (max sensitivity + specificity - 1) or sensitivity (the highest threshold whose
    # validation sensitivity reaches target_sensitivity)
    c.eval.operating_point = "youden"
    c.eval.target_sensitivity = 0.9
    # Temperature scaling fitted on validation (results.json "calibration"; medjax.inference
    # and medjax.evaluate apply it)
    c.eval.calibrate = True

    # Where the run computes, not what (a run resumes on another mesh or device count):
    # a (data, fsdp) device mesh; data=-1 takes every device that fsdp leaves. Batches are
    # split over all devices; the state is laid out by `sharding` (medjax.train.sharding).
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.sharding = ml_collections.ConfigDict()
    c.sharding.strategy = "replicated"  # replicated, or fsdp: state split over mesh.fsdp
    c.sharding.rules = ()  # "REGEX=SPEC" over state paths, before the strategy; see sharding.py

    # Output-level ensembles of separately trained runs (medjax.ensemble): when members are
    # named, `python -m medjax.run` trains the unfinished ones, then combines their predictions.
    c.ensemble = ml_collections.ConfigDict()
    # Each a config spec "experiments/NAME.py[:args] [--config.KEY=VALUE ...]" or a finished
    # workdir; () = an ordinary run
    c.ensemble.members = ()
    c.ensemble.method = "soft"  # soft (mean probability), hard (majority vote), stacking
    c.ensemble.members_dir = ""  # where members train; "" = WORKDIR/members

    # Copies of metrics.jsonl, the config, the test metrics and the plots for browsing runs
    # side by side (medjax.train.tracking); metrics.jsonl and results.json stay the record.
    c.log = ml_collections.ConfigDict()
    c.log.plots = True  # WORKDIR/plots/ at the end (ROC/PR, confusion, reliability, curves)
    c.log.tensorboard = True  # WORKDIR/tensorboard event files: tensorboard --logdir WORKDIR
    # An MLflow tracking URI, e.g. file:/path/mlruns or sqlite:///path/mlflow.db; "" = none.
    # Needs `pip install mlflow` (not a medjax dependency).
    c.log.mlflow_uri = ""

    # Genetic architecture search (python -m medjax.search; medjax.search): candidates are runs
    # of this config with the genome's keys set; fitness is train.select_metric on validation.
    c.search = ml_collections.ConfigDict()
    c.search.space = ()  # genes, each "KEY=[choice, ...]", e.g. "model.kernel_size=[3, 5]"
    c.search.population = 6  # candidates per generation (at least 2)
    c.search.generations = 3  # a rerun with more generations extends a finished search
    c.search.tournament = 2  # candidates drawn per parent; the fittest of them breeds
    c.search.crossover = 0.9  # probability a child mixes two parents gene by gene
    c.search.mutation = 0.2  # probability each gene of a child takes another choice
    c.search.elitism = 1  # fittest candidates copied unchanged into the next generation
    c.search.seed = 0  # the GA's own draws; each candidate still trains with config.seed
    c.search.max_params = 0  # > 0: parameter budget; candidates over it rank below all within
    return c


def parse_arg(arg: str | None, **defaults):
    """Parse the `:a=1,b,c=x` part of `--config file.py:ARGS` into a ConfigDict.

    Each key must be one of `defaults`; its value is converted to the default's type. A bare key
    sets a boolean to True (`:runlocal`).
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(
                f"unknown config argument {key!r}; this config takes: {', '.join(defaults)}"
            )
        default = defaults[key]
        if isinstance(default, bool):
            out[key] = value.lower() in ("", "1", "true", "yes")
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ConfigError(
                    f"config argument {key}={value!r} is not a {type(default).__name__}"
                ) from None
    return out


def apply_runlocal(c: ml_collections.ConfigDict) -> None:
    """Shrink a config to a seconds-long smoke run that still exercises every stage."""
    c.data.max_examples_per_split = 256
    c.data.num_train, c.data.num_val, c.data.num_test = 256, 128, 128
    c.train.num_steps = 12
    c.train.batch_size = 32
    c.train.log_every_steps = 4
    c.train.eval_every_epochs = 0.5
    c.eval.batch_size = 64
    c.eval.bootstrap_samples = 100
