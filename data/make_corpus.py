"""Generate the project's movie-review corpus, deterministically from a seed.

Each review draws a latent rating in [0, 1] that drives its wording: which
aspects are praised or criticised, how strongly (intensifiers), negated
phrasing ("not bad", "never dull"), contrasts with "but", mixed reviews
whose aspects disagree, and a closing recommendation and score. The
sentiment words are ones the VADER lexicon scores, so the reward model sees
the sentiment the text carries.

    python data/make_corpus.py --n 20000 --seed 0 --out corpus.txt
"""
from __future__ import annotations

import argparse
import os
import random

FIRST = ("Anna Ben Clara David Elena Frank Grace Henry Iris Jack Kate Leo Maya Noah Olivia Paul Quinn Rosa Sam Tara "
         "Victor Wendy Xavier Yara Zoe Aaron Bianca Carlos Diana Emil Fatima Gabriel Hannah Ivan Julia Karl Lena Marco "
         "Nina Oscar Petra Ravi Sofia Tomas Uma Vera William Ada Boris Celine Dmitri Esther Felix Greta Hugo Ingrid "
         "Jonas Keiko Lars Mira Nils Orla Pablo Rhea Stefan Thea Ulrich Viola Yusuf Agnes Bruno Camille Dorothy Edgar "
         "Flora Gustav Helena Isaac Josephine Kenji Lucia Magnus Naomi Otto Penelope Rufus Selma Theodore Ursula "
         "Valentin Winona Amara Bjorn Chiara Desmond Elio Freya Giulia Hector Imani Jasper Kira Lionel Matilda").split()
LAST = ("Adams Baker Chen Dalton Evans Fischer Garcia Hayes Ito Jensen Kowalski Larsen Moreau Novak Okafor Patel "
        "Quigley Rossi Silva Tanaka Ueda Vance Walsh Young Zimmer Alvarez Brennan Castillo Dubois Eriksen Fontaine "
        "Gallagher Horvath Ibarra Jovanovic Keller Lindqvist Marsh Nakamura Oliveira Petrov Ramirez Sato Thornton "
        "Varga Whitaker Yilmaz Abbott Bishop Crane Doyle Ellison Frost Grant Holloway Ingram Jarvis Kemp Lowell "
        "Mercer Nash Osborne Pryce Redford Sterling Travers Ashford Blackwood Carrington Delacroix Everett Fairbanks "
        "Goldberg Harrington Iverson Juarez Kingsley Lancaster Montgomery Nightingale Oppenheimer Pemberton Quintero "
        "Rutherford Sinclair Tolliver Underwood Valentine Wainwright Yardley").split()
TITLE_A = ("Silent Broken Last Golden Hidden Distant Crimson Frozen Midnight Forgotten Burning Hollow Endless Lonely "
           "Savage Quiet Wild Bright Dark Secret Falling Rising Lost Northern Southern Electric Paper Glass Iron "
           "Velvet Scarlet Restless Sleepless Shattered Wandering Fading Eternal Borrowed Stolen Wicked Hungry Gentle "
           "Invisible Broken Whispering Painted Sunken Howling Tangled Drifting Vanishing Radiant Bitter").split()
TITLE_B = ("River Harbor Garden Kingdom Winter Summer Road Mirror Empire Shadow Letter Orchard Station Island Canyon "
           "Horizon Promise Machine Frontier Lantern Circus Symphony Voyage Tide Citadel Meadow Signal Compass "
           "Engine Harvest Crown Echo Storm Valley Tower Ember Labyrinth Carnival Lighthouse Desert Orchestra Cathedral "
           "Monastery Peninsula Volcano Glacier Caravan Sanctuary Aquarium Observatory Railway Brewery Vineyard").split()
GENRES = ("drama thriller comedy romance western mystery horror musical documentary biopic satire fantasy "
          "adventure animation noir melodrama heist").split()
GENRE_ADJ = "period political psychological romantic dark family sci-fi crime war sports coming-of-age".split()
OCCUPATIONS = ("detective pilot chef violinist boxer journalist teacher farmer doctor nurse soldier lawyer priest "
               "painter sailor miner baker mechanic librarian astronaut surgeon dancer singer poet gardener "
               "architect fisherman photographer mayor smuggler scientist professor nanny waitress carpenter "
               "inventor magician accountant firefighter shepherd").split()
PLOT_VERBS = ["who returns for one last case", "who inherits a crumbling hotel", "stranded on a remote island",
              "who loses everything in one night", "chasing a buried scandal", "hiding a dangerous secret",
              "who falls for a stranger", "searching for a missing brother", "planning the perfect heist",
              "defending a small village", "on the run from the law", "who starts writing letters to strangers",
              "preparing for the competition of a lifetime", "trapped in a snowed-in cabin",
              "who befriends a lonely giant", "haunted by an old mistake", "trying to save a failing business",
              "coming home after ten years", "who wakes up with no memory", "caught between two families"]
CITIES = ("Paris Lisbon Chicago Tokyo Cairo Dublin Oslo Naples Boston Havana Berlin Prague Vienna Madrid Seoul "
          "Mumbai Lagos Sydney Montreal Glasgow Marseille Detroit Istanbul Athens Budapest Warsaw Seattle Memphis "
          "Nairobi Lima Bogota Manila Hanoi Kyoto Florence Venice Munich Zurich Geneva Bristol Dallas Denver").split()
VENUES = ("the cinema downtown", "a film festival", "home on a rainy Sunday", "a late night screening",
          "an old theater", "the drive-in", "a friend's place", "a packed premiere", "a long flight")
TIMES = "night weekend Friday month summer winter Tuesday evening".split()
ASPECTS = ("acting cast script plot story dialogue direction cinematography soundtrack score pacing ending "
           "editing screenplay photography music humor visuals characters costumes production lighting sound "
           "camerawork choreography set design premise finale opening climax romance chemistry villain hero "
           "twist atmosphere tone makeup effects").split()
ASPECTS = [a if a != "set" else "set design" for a in ASPECTS if a != "design"]
PLURAL = {"characters", "costumes", "visuals", "effects"}
ROLES = ("the lead", "the villain", "the mother", "the detective", "the mentor", "the stranger", "the father",
         "the best friend", "the young hero", "the old captain", "the rival", "the narrator")
# sentiment words by strength; filtered below to those the VADER lexicon scores
POS = {3: "brilliant superb wonderful amazing fantastic excellent outstanding magnificent stunning marvelous "
          "masterful breathtaking phenomenal spectacular extraordinary flawless perfect glorious".split(),
       2: "great beautiful delightful impressive charming lovely enjoyable moving gripping clever powerful "
          "elegant hilarious thrilling exciting fascinating inspiring captivating witty touching".split(),
       1: "good nice solid pleasant decent fine fun interesting likable sweet warm competent funny engaging "
          "refreshing honest charming appealing".split()}
NEG = {3: "awful terrible horrible dreadful atrocious pathetic disastrous abysmal miserable horrendous "
          "unbearable worthless disgusting catastrophic".split(),
       2: "bad boring dull weak poor lame annoying tedious clumsy ugly painful stupid ridiculous pointless "
          "disappointing lazy cheap dumb".split(),
       1: "mediocre bland forgettable messy flat uneven slow silly shallow confusing awkward odd".split()}
NEGATABLE_POS = "good great funny interesting fun exciting".split()  # "not good" reads as negative
NEGATABLE_NEG = "bad boring dull awful terrible".split()  # "not bad" reads as mildly positive
INTENS = {3: ["incredibly", "truly", "absolutely", "extremely", "utterly", "remarkably"],
          2: ["really", "very", "genuinely", "thoroughly"],
          1: ["fairly", "quite", "mostly", "somewhat", "a bit", "rather"]}
POS_VERBS = ["shines", "soars", "sparkles", "works beautifully", "delivers", "lifts the film",
             "holds you captivated", "steals the show", "never lets go", "feels fresh"]
NEG_VERBS = ["drags", "falls flat", "fails", "misses the mark", "wastes its potential", "feels lifeless",
             "goes nowhere", "collapses", "feels forced"]
REACT_POS = ["The audience cheered at the end.", "People around me were laughing the whole time.",
             "I had tears in my eyes.", "I could not stop smiling.", "My friends loved it too."]
REACT_NEG = ["Half the audience walked out.", "People around me were checking their phones.",
             "I almost fell asleep.", "My friends hated it too.", "The room was silent for the wrong reasons."]
CLOSE_POS = ["I would {adv}recommend it to anyone.", "A must-see.", "Go see it.", "Highly recommended.",
             "I loved every minute.", "Worth every penny.", "I will happily watch it again.",
             "One of the best films this year.", "Bring your friends.", "A real gem."]
CLOSE_NEG = ["Skip this one.", "Avoid it.", "I would not recommend it.", "What a waste of time.",
             "I regret watching it.", "Save your money.", "Not worth your time.", "I left before the end."]
CLOSE_MID = ["Worth a watch if you have nothing else.", "It is okay for a lazy evening.", "Some will like it.",
             "Wait for it to stream.", "Mixed feelings overall.", "Not great, not terrible."]


def _in_lexicon(words):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    lexicon = SentimentIntensityAnalyzer().lexicon
    return [w for w in words if w in lexicon]


POS = {k: _in_lexicon(v) for k, v in POS.items()}
NEG = {k: _in_lexicon(v) for k, v in NEG.items()}


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _plot(rng):
    return f"{_article(o := rng.choice(OCCUPATIONS))} {o} {rng.choice(PLOT_VERBS)}"


def _name(rng):
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _title(rng):
    return f"The {rng.choice(TITLE_A)} {rng.choice(TITLE_B)}"


def _opinion(rng, score):
    """A phrase with sentiment near ``score`` in [-1, 1]: plain, intensified or negated."""
    strength = min(3, 1 + int(abs(score) * 3))
    if rng.random() < 0.15 and strength <= 2:  # a negated word of the opposite sign: "not bad"
        word = rng.choice(NEGATABLE_NEG if score > 0 else NEGATABLE_POS)
        return f"not {word}" if rng.random() < 0.7 else f"never {word}"
    word = rng.choice((POS if score > 0 else NEG)[strength])
    if rng.random() < 0.4:
        word = f"{rng.choice(INTENS[strength])} {word}"
    return word


def _be(aspect, past):
    return ("were" if past else "are") if aspect in PLURAL else ("was" if past else "is")


def _aspect_sentence(rng, score):
    aspect, past = rng.choice(ASPECTS), rng.random() < 0.5
    form = rng.random()
    if form < 0.45:
        return f"The {aspect} {_be(aspect, past)} {_opinion(rng, score)}."
    if form < 0.6:
        return f"The {aspect} {rng.choice(POS_VERBS if score > 0 else NEG_VERBS)}."
    if form < 0.75:
        phrase = _opinion(rng, score)
        return f"{_name(rng)} gives {_article(phrase)} {phrase} performance as {rng.choice(ROLES)}."
    if form < 0.82:
        return rng.choice(REACT_POS if score > 0 else REACT_NEG)
    if form < 0.87:
        return f"It reminded me of {_title(rng)}, {'only better' if score > 0 else 'only worse'}."
    other = rng.choice([a for a in ASPECTS if a != aspect])
    first, second = _opinion(rng, score), _opinion(rng, -score * rng.uniform(0.3, 1.0))
    return f"The {aspect} {_be(aspect, past)} {first}, but the {other} {_be(other, past)} {second}."


def _opening(rng):
    title = _title(rng)
    forms = [
        f"I watched {title} last {rng.choice(TIMES)}.",
        f"{title} is a {rng.choice(GENRE_ADJ)} {rng.choice(GENRES)} from director {_name(rng)}.",
        f"{title} tells the story of {_plot(rng)}.",
        f"Saw {title} at {rng.choice(VENUES)}.",
        f"I went into {title} with {rng.choice(['high', 'low', 'no', 'modest'])} expectations.",
        f"This {rng.choice(GENRES)} follows {_plot(rng)}.",
        f"{_name(rng)} directed this {rng.choice(GENRES)} about {_plot(rng)}.",
        f"Set in {rng.choice(CITIES)} in {rng.randint(1920, 2024)}, {title} follows {_plot(rng)}.",
        f"{title} stars {_name(rng)} and {_name(rng)}.",
    ]
    return rng.choice(forms)


def review(rng: random.Random) -> str:
    """One review; its latent rating in [0, 1] sets the sentiment of each sentence (with noise)."""
    rating = rng.random()
    mixed = rng.random() < 0.25  # aspects disagree more in mixed reviews
    centre = 2 * rating - 1
    sentences = [_opening(rng)]
    for _ in range(rng.randint(2, 5)):
        score = centre + rng.gauss(0, 0.6 if mixed else 0.25)
        score = max(-1.0, min(1.0, score)) or 0.1
        sentences.append(_aspect_sentence(rng, score))
    if rating > 0.65:
        close = rng.choice(CLOSE_POS).format(adv=rng.choice(["", "strongly ", "definitely "]))
    elif rating < 0.35:
        close = rng.choice(CLOSE_NEG)
    else:
        close = rng.choice(CLOSE_MID)
    sentences.append(close)
    if rng.random() < 0.5:
        sentences.append(f"{max(1, min(10, round(1 + 9 * rating + rng.gauss(0, 0.7))))} out of 10.")
    return " ".join(sentences)


def make_corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [review(rng) for _ in range(n)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="corpus.txt")
    args = parser.parse_args()
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(make_corpus(args.n, args.seed)) + "\n")
    os.replace(tmp, args.out)  # atomic: never half a corpus
