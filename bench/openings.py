"""Story openings for ``bench.quality``: what a channel might have written before asking the bot.

Twenty-four openings written for the benchmark (none copied from anywhere): three each of
mystery, fantasy, science fiction, romance, horror, comedy and adventure, and one each in
Chinese, Spanish and French. Each has a title, a genre and one to three passages by named
participants; some also set a memory, an author's note or lore entries, so that every part of
the product's prompt is exercised. ``anchors`` are the story's names and things, by which
``bench.quality`` tells whether a passage still belongs to the story. ``QUICK`` names the six
that ``--quick`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lore:
    keys: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Opening:
    title: str
    genre: str
    language: str  # "en", "zh", "es" or "fr"
    # Names and things of the story: a passage that mentions none of them has left the story.
    # Matched at the start of a word, in any case ("map" also finds "Maps"); CJK ones anywhere.
    anchors: tuple[str, ...]
    passages: tuple[tuple[str, str], ...]  # (participant's name, passage), oldest first
    memory: str = ""
    note: str = ""
    lore: tuple[Lore, ...] = ()

    @property
    def participants(self) -> tuple[str, ...]:
        """The people who wrote, in order of their first passage."""
        return tuple(dict.fromkeys(name for name, _ in self.passages))

    def as_prose(self) -> str:
        """The title and the passages joined as plain prose: what a simple bot feeds its model."""
        return "\n\n".join([self.title, *(text for _, text in self.passages)])

    def source_text(self) -> str:
        """Everything the model was shown (prose, memory, note, lore), to tell copied text by."""
        return "\n\n".join([self.as_prose(), self.memory, self.note, *(entry.text for entry in self.lore)])


OPENINGS: tuple[Opening, ...] = (
    # --- mystery
    Opening(
        title="The Ledger at Harrow Street",
        genre="mystery",
        language="en",
        anchors=("Mara", "Tobias", "Crane", "ledger", "pawnshop", "telephone"),
        passages=(
            (
                "Mara",
                (
                    "The pawnshop on Harrow Street had been shut for three days when Mara found its ledger "
                    "in the rain gutter. The pages were swollen, but the last entry was still legible: a name, "
                    "a date, and the words paid in full."
                ),
            ),
            (
                "Tobias",
                (
                    'Tobias turned the ledger over under the streetlamp. "Nobody pays Abel Crane in full," '
                    'he said. "Not in forty years." Somewhere behind the shutters, a telephone began to ring.'
                ),
            ),
        ),
        memory="Mara Quill is a private investigator in a damp port city. Tobias Wren is her former partner, "
        "now a locksmith. Abel Crane runs the pawnshop and has not been seen since Monday.",
        lore=(
            Lore(
                ("Abel Crane", "Crane"),
                "Abel Crane: a pawnbroker who lends to gamblers and keeps every debt in a green ledger.",
            ),
        ),
    ),
    Opening(
        title="Salt on the Windowsill",
        genre="mystery",
        language="en",
        anchors=("Okafor", "Kenji", "salt", "window", "print"),
        passages=(
            (
                "Ines",
                (
                    "Every morning for a week, someone had poured a neat line of salt along Mrs. Okafor's "
                    "windowsill. She had not mentioned it to anyone until the morning the line was broken."
                ),
            ),
            (
                "Kenji",
                (
                    "Kenji knelt by the window and studied the gap in the salt. It was exactly the width of a "
                    "thumb, and the print in the dust beside it was far too small to belong to an adult."
                ),
            ),
        ),
        note="Slow and atmospheric; let the clues hide in small details.",
    ),
    Opening(
        title="The Last Train to Aldermoor",
        genre="mystery",
        language="en",
        anchors=("Priya", "train", "Aldermoor", "conductor", "carriage", "passenger"),
        passages=(
            (
                "Priya",
                (
                    "The 11:40 to Aldermoor left with six passengers and arrived with five. The conductor "
                    "swore nobody had stepped off, and the snow on the platforms at both stations was "
                    "untouched. Priya, who had been asleep in the third carriage, was the only one who had "
                    "seen the missing man's face."
                ),
            ),
        ),
    ),
    # --- fantasy
    Opening(
        title="The Cartographer's Daughter",
        genre="fantasy",
        language="en",
        anchors=("Lysa", "Veilwood", "map", "chart", "silver", "ferryman", "forest"),
        passages=(
            (
                "Mara",
                (
                    "Lysa's father had mapped every road in the kingdom except one. The day after his funeral "
                    "she found it, inked in silver on the back of his last chart, leading straight into the "
                    "Veilwood."
                ),
            ),
            (
                "Tobias",
                (
                    'The ferryman at the edge of the forest would not take her coin. "Maps of the Veilwood '
                    'are lies by the next new moon," he said, but he looked at the silver line for a long '
                    "time before he pushed off from the bank."
                ),
            ),
            (
                "Ines",
                (
                    "That night Lysa camped beneath an oak whose roots glowed faintly blue. When she unrolled "
                    "the chart again, the silver road had moved."
                ),
            ),
        ),
        memory="Lysa is seventeen, stubborn, and good with a knife. Her father was the royal cartographer.",
        lore=(
            Lore(
                ("Veilwood",),
                "The Veilwood: an ancient forest whose paths rearrange themselves at every "
                "new moon; travellers who stay too long forget their names.",
            ),
        ),
    ),
    Opening(
        title="Ember and Frost",
        genre="fantasy",
        language="en",
        anchors=("Ember", "Frost", "tower", "winter", "Council", "candle"),
        passages=(
            (
                "Kenji",
                (
                    "The fire-mage and the ice-witch had been enemies for three hundred years, which made it "
                    "awkward when the High Council locked them in the same tower and told them to end the "
                    "winter together. Ember lit every candle in the room out of spite. Frost put them out "
                    "with a glance."
                ),
            ),
        ),
        note="High fantasy with vivid sensory detail; the two mages bicker but slowly learn to trust each other.",
    ),
    Opening(
        title="The Bell-Witch of Corran Fell",
        genre="fantasy",
        language="en",
        anchors=("witch", "Aled", "Corran", "bell", "starlight", "question"),
        passages=(
            (
                "Ada",
                (
                    "In Corran Fell the church bell rang thirteen times on the night the witch came down from "
                    "the hills. The villagers barred their doors, all except the blacksmith's son, who had "
                    "always wanted to ask her something."
                ),
            ),
            (
                "Tobias",
                (
                    "He found her by the well, filling a copper pail with starlight. She did not look up. "
                    '"You may ask one question," she said, "and I will answer it truthfully. Choose well, '
                    'Aled Smith."'
                ),
            ),
        ),
    ),
    # --- science fiction
    Opening(
        title="Signal from Kepler Station",
        genre="science fiction",
        language="en",
        anchors=("Ravi", "Desai", "Kepler", "HALDEN", "station", "message", "Meridian"),
        passages=(
            (
                "Mara",
                (
                    "Kepler Station had been silent for eleven years when the distress call came through, "
                    "addressed to Commander Ravi Desai by name. Ravi had been nine years old when the station "
                    "went dark."
                ),
            ),
            (
                "Ravi",
                (
                    '"Play it again," Ravi said. The message was four seconds long: a woman\'s voice, calm, '
                    'almost bored. "Commander Desai, HALDEN has made a mistake. Please come alone."'
                ),
            ),
        ),
        memory="The year is 2291. Kepler Station orbits a dead star at the edge of charted space. "
        "Ravi Desai commands the survey ship Meridian, crew of four.",
        lore=(
            Lore(
                ("HALDEN",),
                "HALDEN: Kepler Station's governing AI; polite, literal, and hiding a fault in its memory core.",
            ),
        ),
    ),
    Opening(
        title="The Seed Vault",
        genre="science fiction",
        language="en",
        anchors=("Nadia", "vault", "seed", "shelves", "door", "grandmother"),
        passages=(
            (
                "Ines",
                (
                    "When the last of the orbital farms failed, the council sent Nadia down the mountain to "
                    "the old seed vault. The door still recognised her grandmother's handprint. Inside, the "
                    "shelves were empty, and someone had left the lights on."
                ),
            ),
        ),
    ),
    Opening(
        title="Second Skin",
        genre="science fiction",
        language="en",
        anchors=("Marcus", "body", "Mars", "clinic", "stranger", "tram", "rental"),
        passages=(
            (
                "Kenji",
                (
                    "The rental body fit badly around the shoulders, and it smelled faintly of the previous "
                    "tenant's cologne. Dev had forty-eight hours on Mars before it had to be returned to the "
                    "clinic on Ares Boulevard."
                ),
            ),
            (
                "Ada",
                (
                    "On the tram into the city a stranger sat down opposite him and said, quietly, \"You're not "
                    "Marcus.\" Dev had never heard the name before, but the body's heart began to pound."
                ),
            ),
        ),
        note="Hard science fiction: keep the technology plausible and the tone tense.",
    ),
    # --- romance
    Opening(
        title="Letters to the Lighthouse",
        genre="romance",
        language="en",
        anchors=("Eliza", "W.", "letter", "lighthouse", "lamp", "boat"),
        passages=(
            (
                "Mara",
                (
                    "Every Thursday the supply boat brought Eliza a crate of tinned food, a can of lamp oil, "
                    "and a letter from a stranger on the mainland who signed himself only as W."
                ),
            ),
            (
                "Tobias",
                (
                    'This week the letter was shorter than usual. "I am coming out on the boat," it said. '
                    '"If you would rather I didn\'t, leave the lamp dark on Wednesday night."'
                ),
            ),
        ),
    ),
    Opening(
        title="The Bakery on Quince Lane",
        genre="romance",
        language="en",
        anchors=("Rosa", "florist", "bakery", "tulip", "bread", "biscuit"),
        passages=(
            (
                "Ines",
                (
                    "Rosa had run the bakery on Quince Lane for six years without once burning the bread, "
                    "until the morning the new florist opened across the street and waved at her through the "
                    "window."
                ),
            ),
            (
                "Kenji",
                (
                    "By noon she had burned two batches of rolls and a tray of almond biscuits. The florist "
                    "came over with a bunch of yellow tulips and an apology for the smoke alarm he had heard "
                    "from his shop."
                ),
            ),
        ),
        memory="Rosa is thirty-four, practical, and allergic to flowers. The florist is called Sam.",
    ),
    Opening(
        title="Rain Check",
        genre="romance",
        language="en",
        anchors=("umbrella", "wedding", "hotel", "rain"),
        passages=(
            (
                "Ada",
                (
                    "Two strangers reached for the last umbrella in the hotel lobby at the same moment, and "
                    'neither of them let go. "I have a wedding to get to," she said. "So do I," he said. '
                    "It took them a full minute to realise it was the same wedding."
                ),
            ),
        ),
        note="Warm and witty, a slow burn; sharp dialogue.",
    ),
    # --- horror
    Opening(
        title="The Quiet Floor",
        genre="horror",
        language="en",
        anchors=("elevator", "ninth", "guard", "Marlowe", "footprints", "floor"),
        passages=(
            (
                "Tobias",
                (
                    "The elevator in the Marlowe Building had a button for the ninth floor, but the building "
                    "only had eight. The night guard had been told never to press it."
                ),
            ),
            (
                "Priya",
                (
                    "At 3 a.m. the elevator went up on its own. The guard watched the numbers climb on the "
                    "lobby display: seven, eight, nine. Then it came back down, and the doors opened on an "
                    "empty car with wet footprints on the floor."
                ),
            ),
        ),
        note="Dread over gore. Short sentences. Never explain too much.",
    ),
    Opening(
        title="What the Well Remembers",
        genre="horror",
        language="en",
        anchors=("Tessa", "well", "Hollin", "mother", "echo"),
        passages=(
            (
                "Mara",
                (
                    "The children of Hollin dared each other to shout their names down the old well. Most "
                    "heard only the echo. Tessa heard her name shouted back a moment later, in her mother's "
                    "voice, and her mother had been dead since spring."
                ),
            ),
        ),
        lore=(
            Lore(
                ("well",),
                "The well in Hollin was sealed in 1887 after three children vanished near it; "
                "the seal was broken by a storm last autumn.",
            ),
        ),
    ),
    Opening(
        title="Night Shift at St. Agnes",
        genre="horror",
        language="en",
        anchors=("Okoro", "nurse", "cupboard", "knock", "linen", "St. Agnes"),
        passages=(
            (
                "Kenji",
                (
                    "Nurse Okoro had worked nights at St. Agnes for eleven years, and she knew the sounds "
                    "of the building: the hum of the freezers, the tick of the radiators, the lift that "
                    "groaned between floors."
                ),
            ),
            (
                "Ines",
                (
                    "So she knew, at 2:14 in the morning, that the soft knocking coming from inside the "
                    "locked linen cupboard was not the building."
                ),
            ),
        ),
    ),
    # --- comedy
    Opening(
        title="The Wizard's Tax Audit",
        genre="comedy",
        language="en",
        anchors=("Magnus", "Pettigrew", "receipt", "audit", "wizard", "tax"),
        passages=(
            (
                "Tobias",
                (
                    "The letter from the Royal Revenue Office arrived by pigeon, which was the first bad "
                    "sign. Magnus the Magnificent had not filed a return in two hundred years, on the grounds "
                    "that nobody had ever asked."
                ),
            ),
            (
                "Mara",
                (
                    "The auditor was a small, damp man called Mr. Pettigrew, who refused a cup of tea, refused "
                    'a chair, and refused to be turned into a toad. "Receipts," he said. "All of them."'
                ),
            ),
        ),
        memory="Magnus is a vain, forgetful wizard who lives in a tower full of cats. Mr. Pettigrew is "
        "immune to magic, which he considers a professional requirement.",
    ),
    Opening(
        title="Goat Rodeo",
        genre="comedy",
        language="en",
        anchors=("goat", "rodeo", "fete", "committee", "village"),
        passages=(
            (
                "Ravi",
                (
                    "The village fete committee had voted, by a margin of one, to replace the tombola with a "
                    "goat rodeo. Nobody on the committee had ever seen a goat rodeo. Neither, it turned out, "
                    "had the goats."
                ),
            ),
        ),
        note="Light and absurd; deadpan narration.",
    ),
    Opening(
        title="My Roommate Is a Ghost",
        genre="comedy",
        language="en",
        anchors=("Jess", "Horace", "ghost", "flat", "haunt"),
        passages=(
            (
                "Ada",
                (
                    "The flat was cheap because it was haunted, the estate agent said, but only a little. Jess "
                    "signed the lease on the spot."
                ),
            ),
            (
                "Ines",
                (
                    "The ghost, a Victorian gentleman called Horace, turned out to be terrible at haunting. "
                    "He rattled the wrong chains, moaned off-key, and apologised every time he walked through "
                    "a wall."
                ),
            ),
        ),
    ),
    # --- adventure
    Opening(
        title="Beneath the Atacama",
        genre="adventure",
        language="en",
        anchors=("Alvarez", "cave", "boat", "steps", "drill", "rope"),
        passages=(
            (
                "Priya",
                (
                    "The drill broke through at forty metres, and cold air rushed up the shaft with a sound "
                    "like a held breath let go. Below the desert, where the survey said there should be solid "
                    "rock, there was a cave large enough to swallow a cathedral."
                ),
            ),
            (
                "Tobias",
                (
                    "Dr. Alvarez was the first down the rope. Her headlamp found carved steps, a dry "
                    "riverbed, and, at the edge of the light, a wooden boat that had no business being there."
                ),
            ),
        ),
        memory="Dr. Elena Alvarez leads a small geological survey team in northern Chile. Supplies for five days.",
    ),
    Opening(
        title="The Skyship Albatross",
        genre="adventure",
        language="en",
        anchors=("Albatross", "Vance", "captain", "island", "engine", "cabin boy"),
        passages=(
            (
                "Kenji",
                (
                    "The Albatross lost her starboard engine somewhere over the Brass Sea, and Captain Imre "
                    "Vance ordered everything overboard that wasn't nailed down."
                ),
            ),
            (
                "Mara",
                (
                    "The cargo went first, then the furniture, then the captain's collection of ship-in-a-"
                    "bottle models. The ship still sank, slowly, towards the clouds."
                ),
            ),
            (
                "Ravi",
                (
                    "It was the cabin boy who noticed the island: a green, impossible shape floating in the "
                    "air a mile to the east, with smoke rising from its centre."
                ),
            ),
        ),
        lore=(
            Lore(
                ("Albatross",),
                "The Albatross: a patched-up cargo skyship, two engines, a crew of six and "
                "a captain who owes money in every port.",
            ),
        ),
    ),
    Opening(
        title="The Seventh Cataract",
        genre="adventure",
        language="en",
        anchors=("Hana", "cataract", "river", "expedition", "journal"),
        passages=(
            (
                "Ines",
                (
                    "Every expedition that had tried to pass the seventh cataract of the river had come back "
                    "with fewer people than it set out with, or not at all. Hana had read all of their "
                    "journals. She had packed accordingly."
                ),
            ),
        ),
    ),
    # --- other languages
    Opening(
        title="雾中的茶馆",
        genre="悬疑",
        language="zh",
        anchors=("林晓", "陈默", "茶馆", "龙井", "纸条", "灯笼", "老板"),
        passages=(
            (
                "林晓",
                ("老街尽头的茶馆已经关了十年。那天清晨，林晓路过时，发现门口的灯笼又亮了，里面还传出了烧水的声音。"),
            ),
            (
                "陈默",
                (
                    "陈默推开门，屋里一个人也没有。八仙桌上摆着两杯刚泡好的龙井，"
                    "其中一个杯子下面压着一张纸条，上面写着他的名字。"
                ),
            ),
        ),
        memory="林晓是一名记者，陈默是她的大学同学，现在是一名警察。茶馆的老板十年前失踪了。",
    ),
    Opening(
        title="La casa de los relojes",
        genre="fantasía",
        language="es",
        anchors=("Lucía", "Mateo", "reloj", "abuela", "llave", "cuco"),
        passages=(
            (
                "Lucía",
                (
                    "En la casa de la abuela había cuarenta y dos relojes, y ninguno marcaba la misma hora. "
                    "Lucía había pasado allí todos los veranos de su infancia sin preguntarse por qué."
                ),
            ),
            (
                "Mateo",
                (
                    "La noche del entierro, todos los relojes se detuvieron a la vez. Mateo, su primo, "
                    "encontró una llave pequeña de latón dentro del reloj de cuco del pasillo."
                ),
            ),
        ),
        note="Realismo mágico; frases largas y evocadoras.",
    ),
    Opening(
        title="Le phare des Glénan",
        genre="mystère",
        language="fr",
        anchors=("Camille", "Julien", "phare", "gardien", "journal", "marée", "île"),
        passages=(
            (
                "Camille",
                (
                    "Le gardien du phare avait disparu depuis trois jours quand Camille accosta sur l'île. "
                    "La porte était fermée à clé de l'intérieur, et la lampe tournait toujours."
                ),
            ),
            (
                "Julien",
                (
                    "Julien trouva le journal de bord ouvert sur la table de la cuisine. La dernière page "
                    "ne contenait qu'une phrase, écrite d'une main tremblante : « Ils sont revenus avec la "
                    "marée. »"
                ),
            ),
        ),
        memory="Camille est gendarme à Concarneau. Julien est le neveu du gardien disparu.",
    ),
)

# A spread for --quick: memory + lore, three passages + lore, memory + lore, a note, Chinese, Spanish.
QUICK: tuple[str, ...] = (
    "The Ledger at Harrow Street",
    "The Cartographer's Daughter",
    "Signal from Kepler Station",
    "The Quiet Floor",
    "雾中的茶馆",
    "La casa de los relojes",
)


def quick_openings() -> tuple[Opening, ...]:
    return tuple(opening for opening in OPENINGS if opening.title in QUICK)
