"""The serving model's code file: MLflow's models-from-code logging stores this file instead of a pickled
object and runs it when the model loads (`mlflow models serve`, `mlflow.pyfunc.load_model`)."""

import mlflow.models

from stylepipe.serving import AdaINPyfunc

mlflow.models.set_model(AdaINPyfunc())
