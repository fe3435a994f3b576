"""The card's ``## Citation`` section: the BibTeX of the methods the dataset follows.

UltraChat (dialogue simulation), UltraFeedback (judged preferences), Zephyr (SFT then DPO), MT-Bench
(LLM-as-judge), DPO and TRL. Long reference data, not logic: kept out of :mod:`synthgen.card.sections`
so the section code reads on one screen. Edit here when a citation changes.
"""

from __future__ import annotations

__all__ = ["CITATIONS", "citation_section"]

CITATIONS = r"""@inproceedings{ding2023enhancing,
  title     = {Enhancing Chat Language Models by Scaling High-quality Instructional Conversations},
  author    = {Ding, Ning and Chen, Yulin and Xu, Bokai and Qin, Yujia and Zheng, Zhi and Hu, Shengding and
               Liu, Zhiyuan and Sun, Maosong and Zhou, Bowen},
  booktitle = {Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing},
  year      = {2023},
  url       = {https://arxiv.org/abs/2305.14233}
}

@inproceedings{cui2024ultrafeedback,
  title     = {{ULTRAFEEDBACK}: Boosting Language Models with Scaled {AI} Feedback},
  author    = {Cui, Ganqu and Yuan, Lifan and Ding, Ning and Yao, Guanming and He, Bingxiang and Zhu, Wei and
               Ni, Yuan and Xie, Guotong and Xie, Ruobing and Lin, Yankai and Liu, Zhiyuan and Sun, Maosong},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning},
  year      = {2024},
  url       = {https://arxiv.org/abs/2310.01377}
}

@misc{tunstall2023zephyr,
  title         = {Zephyr: Direct Distillation of {LM} Alignment},
  author        = {Tunstall, Lewis and Beeching, Edward and Lambert, Nathan and Rajani, Nazneen and
                   Rasul, Kashif and Belkada, Younes and Huang, Shengyi and von Werra, Leandro and
                   Fourrier, Cl{\'e}mentine and Habib, Nathan and Sarrazin, Nathan and Sanseviero, Omar and
                   Rush, Alexander M. and Wolf, Thomas},
  year          = {2023},
  eprint        = {2310.16944},
  archivePrefix = {arXiv},
  primaryClass  = {cs.LG}
}

@inproceedings{zheng2023judging,
  title     = {Judging {LLM}-as-a-Judge with {MT}-Bench and Chatbot Arena},
  author    = {Zheng, Lianmin and Chiang, Wei-Lin and Sheng, Ying and Zhuang, Siyuan and Wu, Zhanghao and
               Zhuang, Yonghao and Lin, Zi and Li, Zhuohan and Li, Dacheng and Xing, Eric P. and
               Zhang, Hao and Gonzalez, Joseph E. and Stoica, Ion},
  booktitle = {Advances in Neural Information Processing Systems 36, Datasets and Benchmarks Track},
  year      = {2023},
  url       = {https://arxiv.org/abs/2306.05685}
}

@inproceedings{rafailov2023direct,
  title     = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author    = {Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, Stefano and
               Manning, Christopher D. and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems 36},
  year      = {2023},
  url       = {https://arxiv.org/abs/2305.18290}
}

@misc{vonwerra2022trl,
  title        = {{TRL}: Transformer Reinforcement Learning},
  author       = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and
                  Thrush, Tristan and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and
                  Gallou{\'e}dec, Quentin},
  year         = {2020},
  publisher    = {GitHub},
  howpublished = {\url{https://github.com/huggingface/trl}}
}"""


def citation_section() -> str:
    # CITATIONS holds no backticks, so a plain ``` fence is safe
    return (
        "## Citation\n\nThe methods this dataset follows: UltraChat (dialogue simulation), UltraFeedback "
        "(judged preferences), Zephyr (SFT then DPO), MT-Bench (LLM-as-judge), DPO and TRL.\n\n"
        f"```bibtex\n{CITATIONS.rstrip()}\n```"
    )
