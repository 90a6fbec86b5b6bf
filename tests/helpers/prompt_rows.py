"""Realistic VLMEvalKit TSV rows (the real columns) for every dataset of ``registry.DEFAULT_DATASETS``, each with
its number of images: what the prompt-parity tests feed the official wrappers and ours."""
from __future__ import annotations

import math

import pandas as pd

NaN = math.nan


def row(**cols) -> pd.Series:
    return pd.Series({"index": 0, "image": "iVBORw0KGgo=", **cols})


# Realistic rows per dataset (columns as in the VLMEvalKit TSVs), each with its number of images.
ROWS: dict[str, list[tuple[pd.Series, int]]] = {
    "MME": [(row(question="Is there a dog in this image? Please answer yes or no.", answer="Yes",
                  category="existence", image_path="existence/000000.jpg"), 1)],
    "RealWorldQA": [(row(question="Which object is closer to the camera?", A="The car", B="The tree",
                          C="The sign", D=NaN, answer="A"), 1)],
    "AI2D_TEST": [(row(question="Which stage follows the larva?", A="egg", B="pupa", C="adult", D="nymph",
                        answer="B", hint=NaN, category="lifeCycles"), 1),
                  (row(question="What does the diagram show?", A=NaN, B=NaN, answer="x"), 1)],  # no options
    "CCBench": [(row(question="图中所示的建筑是哪个朝代的？", A="唐朝", B="宋朝", C="明朝", D="清朝", answer="C",
                      hint=NaN, category="traditional_architecture", split="dev"), 1)],
    "SEEDBench_IMG": [(row(question="How many people are in the image?", A="1", B="2", C="3", D="4",
                            answer="B", category="Instances Counting"), 1)],
    "HallusionBench": [(row(question="Is the right orange circle the same size as the left one?", answer=1,
                             category="VD", **{"l2-category": "illusion"}, set_id=0, figure_id=0,
                             question_id=0), 1)],
    "POPE": [(row(question="Is there a snowboard in the image?", answer="yes", category="adversarial"), 1)],
    "MathVista_MINI": [(row(question="Hint: Please answer the question requiring an integer answer and provide the "
                                      "final value, e.g., 1, 2, 3, at the end.\nQuestion: How many cubes are there?",
                             answer="7", question_type="free_form", answer_type="integer", choices=NaN,
                             unit=NaN, precision=NaN, task="math word problem", skills="['arithmetic']"), 1),
                       (row(question="Hint: Please answer the question and provide the correct option letter, "
                                      "e.g., A, B, C, D, at the end.\nQuestion: Is the angle acute?\nChoices:\n"
                                      "(A) Yes\n(B) No", answer="Yes", question_type="multi_choice",
                             answer_type="text", choices="['Yes' 'No']", answer_option="A"), 1)],
    "DocVQA_VAL": [(row(question="What is the date mentioned in the letter?", answer="['March 3, 1959']"), 1)],
    "ChartQA_TEST": [(row(question="What is the highest value in the chart?", answer="['42.5']",
                           split="human"), 1)],
    "InfoVQA_VAL": [(row(question="What percentage of people prefer tea?", answer="['35%', '35']"), 1)],
    "TextVQA_VAL": [(row(question="what brand is the drink?", answer="['coca cola', 'coke']"), 1)],
    "OCRBench": [(row(question="what is written in the image?", answer="['HELLO']",
                       category="Regular Text Recognition"), 1)],
    "MMMU_DEV_VAL": [
        (row(question="<image 1> Which of the following best describes <image 2>?",
              A="A cell", B="<image 3>", C="A tissue", D=NaN, answer="A", split="validation",
              category="Biology", image_path="['1_1.png', '1_2.png', '1_3.png']"), 3),
        (row(question="Based on <image 1>, what is the value of x?", A="1", B="2", C="3", D="4", E="5",
              answer="C", split="dev", image_path="2.png"), 1)],
    "MMBench_DEV_EN": [(row(question="What is the main color of the car?",
                             hint="The image shows a street scene.", A="red", B="blue", C="green", D=NaN,
                             answer="A", category="attribute_recognition", **{"l2-category": "finegrained"},
                             split="dev"), 1)],
    "MMBench_DEV_CN": [(row(question="图中的动物是什么？", hint="这是一张在动物园拍摄的照片。", A="猫", B="狗",
                             C="老虎", D="狮子", answer="C", category="object_localization", split="dev"), 1),
                       (row(question="What is this?", hint=NaN, A="猫", B="狗", answer="A"), 1)],  # CN options
}
