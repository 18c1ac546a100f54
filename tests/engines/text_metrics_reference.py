# ruff: noqa: RUF001 - full-width punctuation is the test data
"""The rule-metrics convention as independent code would write it, from the libraries.

Used by tests/engines/test_text_metrics.py and scripts/bench_text_metrics.py to check
:mod:`evaldock.engines.text_metrics` value for value. Like an independent implementation
it tokenises once for ROUGE and again for F1, and calls rouge-chinese and NLTK as they
come (rouge-chinese's LCS is a Python dict DP: keep pairs short here).

Also the generated data both use: Chinese, English and mixed pairs whose predictions are
edits of their references (dropped, swapped, repeated, replaced words), plus the corner
cases (empty, whitespace, identical, unrelated, one character).
"""

from __future__ import annotations

import math
import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

KEYS = ("accuracy", "f1Score", "rouge_1", "rouge_2", "rouge_l", "bleu4")


class ReferenceMetrics:
    def __init__(self, cache_dir: Path) -> None:
        import jieba
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge_chinese import Rouge

        self._tokenizer: Any = jieba.Tokenizer()
        self._tokenizer.tmp_dir = str(cache_dir)
        self._rouge = Rouge()
        self._bleu = sentence_bleu
        self._smoothing = SmoothingFunction().method3

    def tokens(self, text: str) -> list[str]:
        return [t for t in self._tokenizer.cut(text) if t.strip()]

    @staticmethod
    def accuracy(prediction: str, reference: str) -> float:
        return 1.0 if reference.strip() in prediction else 0.0

    def rouge(self, prediction: str, reference: str) -> tuple[float, float, float]:
        pred, ref = self.tokens(prediction), self.tokens(reference)
        if not pred or not ref:
            return 0.0, 0.0, 0.0
        scores = self._rouge.get_scores(" ".join(pred), " ".join(ref))[0]
        return scores["rouge-1"]["f"], scores["rouge-2"]["f"], scores["rouge-l"]["f"]

    def bleu4(self, prediction: str, reference: str) -> float:
        if not prediction or not reference:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(
                self._bleu([list(reference)], list(prediction), smoothing_function=self._smoothing)
            )

    def f1(self, prediction: str, reference: str) -> float:
        pred, ref = self.tokens(prediction), self.tokens(reference)
        common = Counter(pred) & Counter(ref)
        same = sum(common.values())
        if same == 0:
            return 0.0
        precision = same / len(pred)
        recall = same / len(ref)
        return (2 * precision * recall) / (precision + recall)

    def per_case(self, prediction: str, reference: str) -> dict[str, float]:
        rouge_1, rouge_2, rouge_l = self.rouge(prediction, reference)
        return {
            "accuracy": self.accuracy(prediction, reference),
            "f1Score": self.f1(prediction, reference),
            "rouge_1": rouge_1,
            "rouge_2": rouge_2,
            "rouge_l": rouge_l,
            "bleu4": self.bleu4(prediction, reference),
        }

    @staticmethod
    def mean(cases: list[dict[str, float]]) -> dict[str, float]:
        return {k: math.fsum(c[k] for c in cases) / len(cases) if cases else 0.0 for k in KEYS}


# --- generated data -------------------------------------------------------------------

_ZH = """
我们 今天 天气 非常 好 模型 评估 结果 数据 训练 问题 回答 中国 北京 上海 学习 人工智能
的 了 是 在 和 有 不 也 就 都 要 可以 这个 那个 因为 所以 但是 如果 已经 还是 没有 一个
公司 用户 系统 方法 提高 准确率 生成 文本 翻译 参考 答案 预测 分数 时间 地方 朋友 老师
学生 医院 银行 电脑 手机 网络 市场 经济 发展 社会 文化 历史 世界 研究 技术 科学 自然
语言 处理 长江 黄河 春天 夏天 秋天 冬天 吃饭 睡觉 工作 喜欢 认为 知道 觉得 重要 简单
"""
CHINESE_WORDS = tuple(_ZH.split())
# Out-of-vocabulary characters send jieba through its HMM path.
RARE_CHARS = "龘靐齉爩麤鱻灥骉羴猋犇淼焱垚赑毳掱譶嚞"
CHINESE_PUNCT = ("，", "。", "！", "？", "、", "：", "；", "“", "”", "‘", "’", "……", "......")
_EN = """
the a an of to and in is was for on that with as by at from it this be are have
model evaluation result data training question answer Beijing Shanghai learning
system method accuracy generate text translation reference prediction score time
people world research language processing river spring summer autumn winter GPU API
don't it's Mr. U.S. e.g. state-of-the-art 2024 3.14 100% C++ C# node.js
"""
ENGLISH_WORDS = tuple(_EN.split())
ENGLISH_PUNCT = (".", ",", "!", "?", ";", ":", "...", "'", '"', "(", ")", "-")


def _sentence(rng: random.Random, lang: str, length: int) -> list[str]:
    words: list[str] = []
    for _ in range(length):
        pick = lang if lang != "mixed" else rng.choice(("zh", "zh", "en"))
        roll = rng.random()
        if pick == "zh":
            if roll < 0.12:
                words.append(rng.choice(CHINESE_PUNCT))
            elif roll < 0.17:
                words.append("".join(rng.choices(RARE_CHARS, k=rng.randint(1, 3))))
            elif roll < 0.20:
                words.append(rng.choice(ENGLISH_WORDS))
            else:
                words.append(rng.choice(CHINESE_WORDS))
        else:
            words.append(rng.choice(ENGLISH_PUNCT) if roll < 0.12 else rng.choice(ENGLISH_WORDS))
    return words


def _join(words: list[str], lang: str, rng: random.Random) -> str:
    if lang == "en":
        return " ".join(words)
    # Chinese text has no spaces, but real data sometimes has some, and newlines.
    out = []
    for w in words:
        out.append(w)
        if rng.random() < 0.04:
            out.append(rng.choice((" ", "  ", "\n", "\t", "\u3000")))
    return "".join(out)


def _edit(rng: random.Random, words: list[str], lang: str) -> list[str]:
    out = list(words)
    for _ in range(rng.randint(0, max(1, len(out) // 3))):
        op = rng.random()
        i = rng.randrange(len(out) + 1)
        if op < 0.3 and out:
            del out[min(i, len(out) - 1)]
        elif op < 0.55:
            out.insert(i, _sentence(rng, lang, 1)[0])
        elif op < 0.75 and len(out) > 1:
            j = rng.randrange(len(out))
            k = min(i, len(out) - 1)
            out[j], out[k] = out[k], out[j]
        elif out:
            k = min(i, len(out) - 1)
            out.insert(k, out[k])  # repeated words: ROUGE-N counts each n-gram once
    return out


CORNER_CASES: tuple[tuple[str, str], ...] = (
    ("", ""),
    ("", "参考答案"),
    ("预测", ""),
    ("   ", "  "),
    (" \n", "答案"),
    ("答案", " 答案 "),
    ("好", "好"),
    ("好的", "好的"),
    ("a", "a"),
    ("the the the the", "the cat"),
    ("猫猫猫猫猫", "猫"),
    ("今天天气非常好。", "今天天气非常好。"),
    ("完全无关的句子", "abc xyz"),
    ("等等.......然后?是的", "等等......然后？是的"),
    ("他说：“好。”然后走了！", "他说：“好。”然后走了"),
    ("……好……", "好……"),
    ("Hello, World!", "hello world"),
    ("中文English混合123", "中文 English 混合 123"),
)


def generate_pairs(n: int, lang: str, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (prediction, reference) pairs in ``lang``: "zh", "en" or "mixed"."""
    rng = random.Random(f"{lang}-{seed}")
    pairs = []
    for _ in range(n):
        ref_words = _sentence(rng, lang, rng.randint(1, 40))
        roll = rng.random()
        if roll < 0.05:
            pred_words = list(ref_words)
        elif roll < 0.10:
            pred_words = _sentence(rng, lang, rng.randint(0, 20))
        elif roll < 0.20:
            # the reference inside a longer answer: accuracy 1
            pred_words = [*_sentence(rng, lang, 3), *ref_words, *_sentence(rng, lang, 3)]
        else:
            pred_words = _edit(rng, ref_words, lang)
        reference = _join(ref_words, lang, rng)
        prediction = _join(pred_words, lang, rng)
        if roll < 0.15 and rng.random() < 0.3:
            reference = f" {reference}\n"
        pairs.append((prediction, reference))
    return pairs
