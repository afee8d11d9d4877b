"""The building blocks of phase-two heads, and no method: the interface every head implements
(head.py: Head, HeadDims, HeadOutput, Stage, Knob), recurrent cells (rnn.py), the glance policy
network (policy.py), policy gradients (reinforce.py: REINFORCE with a baseline; ppo.py: PPO), annealed
Gumbel-softmax decisions (gumbel.py), sample-wise early exit (exits.py) and attention over a video's
frames (attention.py). A method is a file in c2f.heads that puts these together and registers itself.

May import: c2f.methods (the Settings base), c2f.data (batches) and pipeline.core; never c2f.heads."""
