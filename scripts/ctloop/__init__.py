"""ctloop: the shared ML code of the continuous-training stack.

One module per pipeline stage: dataset, preprocess, embed, train, evaluate, export, registry,
predict. The reference builder, the trainer and the serving API all import from here.
"""

__version__ = "0.1.0"
