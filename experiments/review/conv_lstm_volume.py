"""ConvLSTM over the slices of a volume: does keeping each slice's feature map through the
recurrence (Shi et al. 2015) find a lesion that spans a few slices?

Question: the review's recurrent volume designs read the slices of a CT/MRI volume in order
with a recurrent network; medjax's cnn_rnn pools every slice to a vector first, conv_lstm keeps
the slices' (h, w, F) maps and uses a convolutional LSTM, so where in the slice the lesion is
survives until the last state. This config runs it with the review recipe (medjax.configs.review:
Adam 1e-3, cosine, batch 32, seed) on generated volumes.
Study design: "CNN + ConvLSTM over slices" (medjax.models.conv_lstm: the plain CNN's stages
(8, 16) on every 28 x 28 slice, a 3x3 ConvLSTM of 16 channels with peepholes, the last state
averaged, dropout 0.2, a Linear head).
Data: the phantom3d source (no files): 512/128/256 MRI-like volumes of 8 x 28 x 28 voxels,
lesion absent (0) or present (1), Rician noise; random flips in-plane.
Command:
    python -m medjax.run --config experiments/review/conv_lstm_volume.py:seed=0 --workdir runs/review/convlstm0
    python -m medjax.run --config experiments/review/conv_lstm_volume.py:runlocal --workdir /tmp/x
Result (seed 0; 2-core AMD EPYC CPU shared with other jobs, 11.5 min): test AUC 0.985 [0.970,
0.995], accuracy 0.938 [0.906, 0.965], lesion sensitivity 0.883 (checkpoint of step 128 of 160,
chosen by validation AUC). No volume baseline was run beside it (cnn3d or cnn_rnn on the same
data would be the comparison).
"""

from medjax.configs.base import parse_arg
from medjax.configs.review import review_config


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, seed=0)
    runlocal = ",runlocal" if arg.runlocal else ""
    c, _ = review_config(f"data=phantom,seed={arg.seed}{runlocal}")
    c.data.source = "phantom3d"
    c.data.modality = "mri"
    c.data.depth = 8
    c.data.augment = ("random_flip(axis='both')",)  # the 2D recipe's affine is for images
    c.model.name = "conv_lstm"
    c.model.widths = (8, 16)
    c.model.convs_per_stage = 1
    c.model.rnn_hidden = 16
    if arg.runlocal:
        c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
        c.train.num_steps = 6
        c.train.batch_size = 16
        c.train.eval_every_epochs = 1.0
    else:
        c.data.num_train, c.data.num_val, c.data.num_test = 512, 128, 256
        c.train.num_epochs = 10.0
    return c.lock()
