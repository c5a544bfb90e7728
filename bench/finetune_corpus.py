"""A sample community's finished stories for ``bench.finetune``: twelve tales of one harbour town.

Written for the benchmark (none copied from anywhere). A channel that writes together for a
while grows a world and a voice of its own, and that is what an adapter can learn: these
stories share the town of Greyhaven (the lighthouse, the Lamplighters' Guild, the tide-bells,
Mother Oyle's tavern, the salt-witch Neve) and one plain, past-tense, sea-soaked voice, told in
short turns as a chat writes them. Each story's passages alternate between people and the bot,
as in the ``alternate`` mode; a passage is a paragraph. 12 stories, 168 passages.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CorpusStory:
    title: str
    genre: str
    memory: str
    text: str  # the passages, separated by blank lines

    @property
    def passages(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.text.strip().split("\n\n") if p.strip())


STORIES: tuple[CorpusStory, ...] = (
    CorpusStory(
        "The Lamp That Would Not Light",
        "mystery",
        "Greyhaven is a fishing town on the Lantern Coast. Ida Marsh is the new keeper of the lighthouse.",
        """
Ida Marsh climbed the ninety steps of the Greyhaven light on her first night as keeper. The wind came through the cracks in the stone and sang like a kettle. At the top, the great lamp sat cold and dark.

She struck a match. The wick took the flame, held it for a breath, and let it die. She struck another, and the same thing happened, as if something in the glass had blown it out.

Down in the harbour, the tide-bells began to ring. They only rang when a boat was out past the reef, and no boat should have been out on a night like this.

Ida pressed her face to the salt-streaked glass. Far out on the black water she saw a single green light, bobbing low, coming closer with every wave.

She ran down the ninety steps two at a time and out along the quay. Old Tam the net-mender was already there, his lantern held high and his face the colour of chalk.

"That's no boat of ours," Tam said. "Green lights belong to the drowned. My grandmother told me so, and she was never wrong about the sea."

Ida did not believe in the drowned, but she believed in the reef, and she knew that whoever steered that light would tear their hull open on it within the hour.

She went back up the tower with Tam's lantern and a tin of lamp oil from the Guild stores. This time she checked the wick first. Someone had soaked it in seawater and dried it again.

"Sabotage," she said aloud, to nobody. The word sounded strange in the round stone room. Someone in Greyhaven wanted the light dark tonight.

She cut a fresh wick from the spool, trimmed it, and lit it. The flame rose tall and steady, and the great lens turned, throwing its white beam across the water.

Out on the sea, the green light stopped. For a long moment it hung there, as if it were thinking. Then it turned and drifted back toward the open dark.

In the morning Ida found wet boot prints on the ninety steps, coming up and going down. They were small, smaller than her own, and they smelled faintly of tar and lavender.

Only one person in Greyhaven wore lavender water. Ida had met her at the Guild supper the night before: Clemency Vane, the harbourmaster's quiet daughter.

Ida wrote the name in the keeper's log, under the date, and closed the book. She would watch the light herself tonight, and every night, until she understood why.
""",
    ),
    CorpusStory(
        "Mother Oyle's Last Barrel",
        "comedy",
        "Mother Oyle runs the Drowned Rat, the only tavern in Greyhaven. Her rum is famous up and down the Lantern Coast.",
        """
Mother Oyle had run the Drowned Rat for thirty years, and in thirty years she had never once run out of rum. On the morning of the spring fair, she rolled out her very last barrel.

"One barrel," she told the room, "and the whole fleet coming in by noon. Somebody had better think of something, or there'll be a riot on my floorboards."

Pip the pot-boy thought of something at once. He always did. His ideas were like gulls: loud, quick, and usually ended with somebody losing their lunch.

"We water it down," Pip said. "Half rum, half rainwater. The fishermen won't notice. They drink it so fast they never taste it anyway."

Mother Oyle fetched him a smack on the ear with her ladle. "They'll notice. They notice everything except their wives' birthdays. Think again, boy."

Pip thought again. He looked at the barrel, then out of the window at the fair, where the salt-witch Neve had set up her stall of charms and bottled weather.

He ran across the square and came back ten minutes later with a small green bottle. The label said FAIR WIND in Neve's spidery hand, and the cork was tied down with red thread.

"She says one drop in a barrel makes it last all day," Pip said. "She says it's a sailor's charm. She says not to shake it, and definitely not to drink it straight."

Mother Oyle frowned at the bottle, then at the crowd of thirsty fishermen gathering outside. She pulled the cork and let one drop fall into the barrel.

Nothing happened. Then the barrel gave a long, contented sigh, like an old dog settling by the fire, and a fresh sea breeze blew out of the tap.

All day the fishermen drank, and all day the barrel stayed full. But every mug came with a gust of wind that blew the drinker's hat clean off and out into the street.

By sunset the square was full of hats, and the gulls were nesting in half of them. The fishermen agreed it was the finest spring fair Greyhaven had ever held.

Neve came to collect her fee at closing time. She took one look at the hats and laughed so hard she had to sit down on the last barrel, which sighed again.

Mother Oyle paid her in rum. It seemed only fair. And from that year on, the spring fair in Greyhaven was known up and down the coast as the Day of the Flying Hats.
""",
    ),
    CorpusStory(
        "The Tide-Bell Thief",
        "adventure",
        "The tide-bells hang on iron posts along Greyhaven's reef and ring when a boat passes. The Lamplighters' Guild keeps them.",
        """
The smallest of Greyhaven's tide-bells went missing on the night of the new moon. In the morning there was only the iron post, bare and dripping, and a frayed end of rope.

Wren was twelve and an apprentice of the Lamplighters' Guild, which meant she cleaned the bells, oiled the lamps, and was blamed for everything that went wrong with either.

"Find it," said Master Corrigan, "or you'll be scraping barnacles off the reef posts until you're old enough to grow a beard." Wren did not intend to grow a beard.

She rowed out to the empty post at low tide. The rope had not been cut. It had been chewed, and the marks were wide and flat, like the teeth of something large and patient.

Something glinted in the weed below the post. Wren leaned over the side and pulled up a single grey scale as big as her palm, smooth as a shell and cold as the bottom of the sea.

She took the scale to Neve the salt-witch, who lived in the upturned hull of a boat at the end of the shingle. Neve turned it over in her long brown fingers and whistled.

"Seal-folk," Neve said. "Or something older. They like bells. They like anything that sings. You'll not get it back by asking, little lamplighter. You'll have to trade."

"Trade what?" asked Wren. Neve only smiled and pointed at the whistle hanging round Wren's neck, the brass one her father had carved with waves before he was lost at sea.

Wren rowed out again that night with the whistle in her fist. The water was flat and black. She blew one long note, and then another, and waited with her heart in her mouth.

A head rose out of the sea beside the boat: sleek and grey, with eyes as large as lamps. Round its neck, on a loop of kelp, hung the little tide-bell, ringing softly.

The creature looked at the whistle. Wren looked at the bell. Neither of them moved for a long time, while the boat rocked gently between them on the slow black swell.

Finally Wren held out the whistle. A webbed hand took it, and the kelp loop slipped over the side of the boat and into her lap, the bell still warm from the creature's neck.

When she looked up, the sea was empty. But far out past the reef, somebody was blowing a brass whistle, one long note and then another, badly and very happily.

Master Corrigan never asked how she found the bell. And on quiet nights after that, Wren would sometimes hear the whistle from the water, and she would ring the bell back.
""",
    ),
    CorpusStory(
        "The Salt-Witch's Apprentice",
        "fantasy",
        "Neve the salt-witch lives in an upturned boat on Greyhaven's shingle and sells bottled weather.",
        """
Nobody in Greyhaven wanted to be apprenticed to Neve the salt-witch, so when Jory Flint asked for the job, Neve looked at him for a long time before she said yes.

"You'll start with salt," she told him. "Salt remembers everything the sea ever touched. Boil a pan of seawater down and tell me what you find at the bottom."

Jory boiled the water on Neve's little iron stove until his eyes stung. At the bottom of the pan lay a crust of white salt, and in the salt, very faintly, the shape of a ship.

"That's the Margaret Rose," Neve said, peering over his shoulder. "Sank off the point forty years ago. The sea still dreams about her. Everything the sea takes, it remembers."

For a month Jory boiled seawater, and for a month he found ships and anchors and once a wedding ring, printed in the salt like a picture in frost on a window.

Then one morning he found a face. It was a woman's face, young and frowning, and the salt around it was grey instead of white, the colour of a storm coming in from the north.

Neve went very quiet when she saw it. She put on her oilskin coat, though the sky was blue, and took down a bottle from the highest shelf, labelled NORTH WIND, DO NOT OPEN.

"That's my sister," Neve said. "The sea took her the year I turned sixteen. If she's showing in the salt now, it means the sea's ready to give something back."

They walked down to the tideline together. The wind was rising, and the waves were grey and heavy, and the gulls had all gone inland as if they knew something was coming.

At the edge of the water, Neve uncorked the bottle. The north wind came out of it in a long howl, and the sea in front of them pulled back, and back, further than any tide.

On the wet sand, where the water had been, lay a small wooden box, crusted with barnacles and bound with rusted iron. Neve knelt in the mud and opened it with shaking hands.

Inside was a comb of yellowed bone, a lock of dark hair tied with thread, and a letter, dry as the day it was written, addressed to Neve in her sister's careful hand.

Neve did not read it there. She put it in her coat, corked the bottle, and let the sea come back in. Then she walked home without a word, and Jory followed her.

That night Jory saw her candle burning late in the upturned boat. In the morning, for the first time since he had known her, Neve the salt-witch was humming as she worked.
""",
    ),
    CorpusStory(
        "Fog Over the Reef",
        "horror",
        "The reef off Greyhaven has wrecked more boats than anyone can count. Fishermen never speak of what they hear there in fog.",
        """
The fog came in at dusk and did not lift. By midnight it was so thick that the beam of the Greyhaven light was only a pale smudge, and the tide-bells sounded far away and muffled.

Hal Brennock was still out past the reef. He had stayed too long for the mackerel, and now he could not see his own bow, let alone the harbour lights.

He cut the engine and listened. The tide-bells should have told him where the reef was. But the sound came from everywhere at once, as if the fog had swallowed it and spat it out.

Then he heard something else. Under the bells, low and patient, someone was knocking on the hull of his boat. Three knocks, a pause, and three knocks again.

Hal told himself it was driftwood. He told himself it was a loose fender. But he had tied the fenders himself that morning, and driftwood did not knock in threes.

"Who's there?" he called, and felt foolish, and then felt cold, because a voice answered him out of the fog, and it was his own voice, saying his own words back.

He fumbled for the lantern. Its light made a small gold room in the grey, and at the edge of that room, just over the side of the boat, he saw a hand on the gunwale.

It was a pale hand, and wet, and there was a ring on its finger. Hal knew that ring. He had buried his brother with it, seven years ago, in the churchyard above the harbour.

He did not scream. He could not. He sat with the lantern shaking in his fist while the hand held the gunwale, and the fog pressed close, and the bells rang on and on.

Then, from very far off, came a sound he had never been so glad to hear: the deep horn of the lighthouse, sounding the fog signal, long and low, over and over.

The hand let go. The fog thinned for a moment, just enough, and Hal saw the green glow of the harbour light and the dark line of the reef, a boat's length from his bow.

He started the engine and steered for the light with his eyes half shut. He did not look back. He did not look at the water, or at the gunwale, or at the wet marks the hand had left.

Ida Marsh was waiting on the quay with a blanket and a flask. She had sounded the horn for two hours straight, she said, because she had heard someone out there, calling.

Hal never went past the reef in fog again. But every year, on his brother's birthday, he rowed a little way out and dropped a ring into the water, and listened for three knocks.
""",
    ),
    CorpusStory(
        "The Harbourmaster's Daughter",
        "romance",
        "Clemency Vane is the harbourmaster's daughter. She is quiet, reads everything, and walks the sea wall at night.",
        """
Clemency Vane walked the sea wall every night after her father was asleep. The wind off the water was the only thing in Greyhaven that never asked her to be anyone but herself.

On the third night of the herring run, she found someone already there: the new lighthouse keeper, Ida Marsh, sitting with her boots dangling over the edge and a logbook on her knees.

"You're the one with the lavender," Ida said, without looking up. "I found your boot prints on my stairs." Clemency felt her face go hot in the dark.

"I wasn't trying to hurt anyone," she said. "I was trying to keep the light dark for one night. There was a boat I needed to come in without being seen."

Ida closed the logbook. "A green light," she said. "Past the reef. Whose boat was it?" Clemency sat down beside her on the cold stone, because it was easier than standing.

"My mother's," she said. "She left when I was small. She sails with smugglers now. Once a year she comes close enough to see the town, and I signal to her, and she signals back."

Ida was quiet for a long time. The beam of the lighthouse swept over them, and away, and over them again, turning their faces white and then dark, white and then dark.

"You could have asked me," Ida said at last. "I would have kept the light. But I'd have rowed you out past the reef myself, so you could see her properly. Not just a light."

Clemency laughed, and it came out wet. Nobody had ever offered her anything without wanting something back. She did not know what to do with it, so she looked at the sea.

"Next year," she said. "If you're still here. Keepers don't last long in Greyhaven. The last one went mad, they say, and the one before him married a seal."

"I've no plans to go mad," said Ida. "And I've never met a seal I liked half as much as the harbourmaster's daughter." She said it to the water, and went red to her ears.

The herring boats came in at dawn, their lamps strung along the harbour like beads. Clemency and Ida were still sitting on the sea wall, talking about everything and nothing.

When the tide-bells rang for the first boat, Clemency stood and brushed the salt from her skirt. "Tomorrow night," she said. It was not quite a question.

"Tomorrow night," said Ida. She climbed the ninety steps that morning with her logbook under her arm, and for the first time since she came to Greyhaven, she did not feel tired at all.
""",
    ),
    CorpusStory(
        "The Lamplighters' Strike",
        "drama",
        "The Lamplighters' Guild keeps every lamp and bell in Greyhaven. Master Corrigan leads it; the town council pays it, badly.",
        """
The town council of Greyhaven voted to cut the Lamplighters' wages by a third. Master Corrigan heard the news at the Drowned Rat, and he put down his mug so hard that it cracked.

"Then let them light their own lamps," he said. By morning, every lamplighter in the Guild had laid down their poles, and the oil stores were locked with Corrigan's own key.

The first night without lamps, Greyhaven was dark as the bottom of a well. People walked into walls and fell off the quay. Mother Oyle lit candles in every window of the Drowned Rat.

The second night, the fog came. Without the harbour lamps, two boats ran aground on the shingle, and the tide-bells on the reef went unoiled and sang so harshly that dogs howled all night.

On the third day the mayor came down to the Guild hall with his hat in his hands. He was a round, pink man who had never oiled a lamp or climbed a ladder in his life.

"The town cannot pay more," he said. "The herring catch is poor. The roof of the council house leaks. Surely the Guild can see reason." Corrigan did not offer him a chair.

"The Guild sees the reef," said Corrigan. "The Guild sees the fog. The Guild sees every boat that comes home because a lamp was lit. Reason can pay us what it owes."

Wren, the youngest apprentice, was listening from the stairs. She thought of the tide-bell she had traded for, and of the creature in the water, and of her father's lost boat.

She came down the stairs and stood between them, though her knees were shaking. "The light isn't the council's," she said, "or the Guild's. It's for the boats. It's for the people out there."

Both men looked at her. The mayor opened his mouth and closed it again. Corrigan rubbed his beard, and for a moment he looked very old and very tired.

"The lighthouse stays lit," Corrigan said at last. "It always has, strike or no strike. Ida Marsh has oil enough for a month. But the streets stay dark until the council pays."

It took the council nine more days to find the money. They found it, in the end, in the budget for the new council house roof. The mayor's office leaked all that winter.

On the night the lamps were lit again, the whole town came out to watch. Corrigan let Wren light the first one, at the end of the quay, with a long pole and a steady hand.

The flame caught, and the people cheered, and out on the reef the tide-bells, freshly oiled, rang clear and sweet across the water, as if the sea itself were glad.
""",
    ),
    CorpusStory(
        "What the Net Brought Up",
        "mystery",
        "Old Tam mends the nets of Greyhaven and has seen everything the sea can bring up. Almost everything.",
        """
Old Tam the net-mender had pulled strange things out of Greyhaven's nets: a boot with a foot still in it, a church bell, a live octopus in a teapot. But he had never pulled up a door.

It was an ordinary door, painted blue, with a brass knocker in the shape of a fish. It had come up in the Brennock boat's trawl, and it was perfectly dry, though it had been a mile down.

Tam leaned it against the wall of his net shed and looked at it for a long time. Then, because he was old and curious and had very little left to lose, he knocked.

Nothing happened. The fish-shaped knocker was cold under his hand. He knocked again, harder, and from the other side, quite clearly, someone knocked back.

Tam went for Neve the salt-witch. She came at once, in her oilskin coat, with a bag of salt and a sprig of dried sea lavender, and she walked around the door three times without touching it.

"It's a way in," Neve said. "Or a way out. Depends which side you're on. Somebody down there wants to come up, Tam, and they've sent their door ahead to knock first. That's manners."

"And if we open it?" asked Tam. Neve shrugged. "Then we'll know who's been waiting. The sea keeps its doors shut for a reason. But it sent this one to you, and not to me."

Tam thought of his wife, who had gone out to the mussel beds forty years ago and never come back. He thought of the blue door on their cottage, which he had painted every spring since.

His hand was on the knocker before he knew it. He turned the handle, and the door swung open, and on the other side there was nothing but the wall of the shed and his own old nets.

But the smell that came through was the smell of the mussel beds at low tide, and of lavender water, and of the bread his wife used to bake on Sundays, warm and sweet.

Tam stood in the doorway with tears running into his beard. Neve put her hand on his shoulder and said nothing, which was the kindest thing anyone had done for him in years.

When the smell faded, the door was only a door again: old, blue, and beginning to drip seawater onto the floor as if it had finally remembered where it came from.

Tam hung it on his own cottage the next day, in place of the old one. The fish-shaped knocker shone in the morning sun, and the neighbours said it was a fine door, and asked where he got it.

"The sea lent it to me," said Tam, and went inside. Sometimes, late at night, he would hear a knock from the other side, and he would knock back, and sleep better for it.
""",
    ),
    CorpusStory(
        "The Whale Road",
        "adventure",
        "Hal Brennock fishes out of Greyhaven. His boat is the Gannet. Wren of the Lamplighters' Guild sometimes sails with him.",
        """
In the spring of the great storm, a whale came into Greyhaven harbour and could not find its way out again. It lay in the shallows by the fish market, huge and grey and breathing slowly.

The whole town came to look. The children threw it bread. Mother Oyle brought it a bucket of rum, which it declined. The mayor made a speech about tourism, which it also declined.

Hal Brennock was the only one who went close. He waded out in his boots until the water was at his chest and put his hand on the whale's side. It was warm, and it was trembling.

"It's lost," Hal said when he came back. "The storm turned it round. It can't hear the deep water from in here. The harbour walls echo. It thinks the sea is everywhere."

Wren of the Lamplighters' Guild was standing on the quay, and she had an idea. Her ideas were not like Pip's. Hers were quiet, and took a while, and usually worked.

"The tide-bells," she said. "If we ring them in order, from the harbour to the open sea, it can follow the sound out past the reef. Like lamps along a road, but for ears."

Master Corrigan said it was nonsense. Neve the salt-witch said it was the best idea she'd heard in a year. In Greyhaven, when those two disagreed, people usually listened to Neve.

So at high tide, when the water was deepest over the reef, the Lamplighters rowed out to every tide-bell post, one apprentice to a bell, and waited for Wren's signal from the harbour mouth.

Wren rang the first bell. Then the next apprentice rang the second, further out, and the next the third. The sound went out across the water like a line of lamps being lit, one by one.

In the harbour, the whale lifted its great head. It listened. Then, slowly, with a sound like a sigh from the bottom of the world, it turned and swam toward the first bell.

Hal followed it in the Gannet, keeping a boat's length off. The whale passed the first bell, and the second, and the third, and the water under it turned from green to blue to black.

At the last bell, past the reef, it stopped and rolled onto its side, and one huge dark eye looked up at Hal and at Wren beside him in the boat. Then it dived, and was gone.

They waited a long time, but it did not come up again. Wren rang the last bell once more, softly, for luck. The sound went out over the open water and did not come back.

Every spring after that, the Lamplighters rang the bells in order on the first high tide, from the harbour to the sea. They called it the Whale Road, and nobody in Greyhaven ever missed it.
""",
    ),
    CorpusStory(
        "A Room at the Drowned Rat",
        "mystery",
        "Mother Oyle rents rooms above the Drowned Rat. Strangers rarely come to Greyhaven in winter.",
        """
The stranger came to Greyhaven in the dead of winter, when no coach ran and no boat came in. He simply walked into the Drowned Rat one night, wet to the knees, and asked Mother Oyle for a room.

He paid in old coins, heavy and gold, with a ship stamped on one side and a crown on the other. Mother Oyle bit one, found it real, and gave him the best room, the one over the kitchen.

He never ate. He never drank. He sat by the window all day and watched the lighthouse, and at night he went out and walked the shingle, and came back before dawn with sand on his boots.

Pip the pot-boy was sure he was a smuggler. Old Tam was sure he was a ghost. Mother Oyle was sure of nothing except that his gold was good, which was all she needed to be sure of.

On the seventh night, Ida Marsh came down from the lighthouse to buy oil, and she stopped in the doorway of the Drowned Rat as if she had walked into a wall.

"You," she said to the stranger. He stood up slowly, and took off his hat, and for the first time since he came, he smiled. It was a tired, sad smile, like a boat coming home empty.

"Hello, Ida," he said. "I told you I'd find you. Even here, at the end of the world, with your lamp and your ninety steps. I kept my promise, you see. I always do."

The whole tavern went silent. Ida's hands were shaking. She put down the oil can very carefully on the nearest table, as if it might break, and looked at the stranger's face.

"You drowned," she said. "Off the coast of Harl, six years ago. I saw the wreck. I saw them bring up the mast. They never found you. I stopped looking, Edwin. I had to stop."

"I know," said Edwin. "That's why I'm here. I came to tell you it's all right to stop. I only wanted you to hear it from me. I didn't want you keeping a lamp lit for me forever."

Ida began to cry, quietly, standing in the middle of the Drowned Rat with everyone watching. Mother Oyle came round the bar and put an arm around her, and glared at the room until it looked away.

When Ida looked up again, the stranger's chair was empty. His hat was gone from the table. Only the gold coins were left on the bar, still wet, with a little sand stuck to them.

Mother Oyle never spent those coins. She nailed one over the door of the Drowned Rat for luck, and it is there still, with its ship and its crown, turning green in the salt air.

And Ida went back up her ninety steps, and lit her lamp, and kept it lit, as she always had. But she kept it lit for the living now, and she slept better than she had in six years.
""",
    ),
    CorpusStory(
        "The Herring King",
        "fantasy",
        "Every seventh year, Greyhaven's herring run fails unless the fishermen pay the Herring King his due.",
        """
Every seventh year, the herring did not come. The old fishermen of Greyhaven knew why. The Herring King wanted his due, and until he had it, not a single silver fish would swim into their nets.

This was the seventh year, and the mayor did not believe in the Herring King. He believed in modern methods. He hired a steam trawler from the city, with iron nets and a captain who laughed at bells.

The trawler went out past the reef three times. Three times it came back empty, with its iron nets torn as if something enormous had swum through them on purpose, just to make a point.

Old Tam said it was time to pay the due. Nobody remembered exactly what the due was. The last person who had paid it was Tam's grandmother, and she had kept the secret to her grave.

Neve the salt-witch boiled a pan of seawater down to salt, and in the salt she read the shape of a crown, and under the crown a song, written in the old tongue of the Lantern Coast.

"He wants a song," Neve said. "That's all he ever wanted. The old fishermen used to sing to him on the first night of the run. Somebody stopped, and the herring stopped too."

The trouble was that nobody in Greyhaven could sing. Mother Oyle sang like a gate in a gale. The Lamplighters sang like cats. Hal Brennock only knew songs that could not be sung to a king.

In the end it was Clemency Vane who learned the song, from Neve, over three long nights in the upturned boat. She had a low, clear voice, and she had never once sung in front of anyone.

On the first night of the run, the whole town rowed out past the reef in a great ring of boats, lanterns lit. Clemency stood in the bow of the Gannet, and Ida Marsh held her hand.

She sang. Her voice shook at first, and then it did not. The old words went out over the black water, and the water went still, and far below the boats, something vast and silver turned.

The Herring King rose only once, and only for a moment: a crown of silver fins, an eye as large as a cartwheel, and a wake that rocked every boat in the ring and set the tide-bells ringing.

Then the sea around them boiled with herring. They leapt into the boats of their own accord, so many that the fishermen had to bail them out with buckets, laughing and soaked to the skin.

It was the greatest run in Greyhaven's memory. The mayor said it was modern methods. Nobody argued with him. They were all too busy salting herring to care what the mayor said.

Clemency sang on the first night of the run every seventh year after that. She never sang anywhere else, and she never needed to. Greyhaven remembered, and so did the Herring King.
""",
    ),
    CorpusStory(
        "The Last Night of the Old Light",
        "drama",
        "The council has ordered a new electric lamp for the Greyhaven lighthouse. Ida Marsh has kept the old oil lamp for ten years.",
        """
The new electric lamp arrived in Greyhaven on a cart from the city, packed in straw like an egg. It would never need oil, the engineer said, and never need a wick, and never need a keeper.

Ida Marsh had kept the old lamp for ten years. She read the engineer's papers at the kitchen table of the keeper's cottage, twice, and then she put them in the stove and watched them burn.

"They'll need someone to change the bulb," said Clemency, who had been her wife for seven of those years. "Won't they?" Ida did not answer. She was looking at the tower.

On the last night of the old light, half of Greyhaven climbed the ninety steps. They came in turns, ten at a time, because the lamp room would not hold more, and each of them brought something.

Mother Oyle brought a bottle of the rum from the Day of the Flying Hats, which she had kept all these years. When she pulled the cork, a small warm breeze blew out and ruffled everyone's hair.

Wren, who was Master of the Lamplighters' Guild now, brought the little tide-bell from the reef. She rang it once, softly, and far out on the water, something rang back.

Old Tam was too frail for the stairs, so Hal Brennock carried him up on his back, and Tam sat by the great lens with his hand on the warm brass and said nothing at all for an hour.

Neve the salt-witch came last. She brought a pan of seawater and boiled it down on the lamp's own flame, and in the salt at the bottom was the shape of the tower, and the beam, and every boat it had saved.

At midnight Ida trimmed the wick for the last time. Her hands were steady. She had done it ten thousand times, and she did it now as if it were the first time, slowly and with care.

Then she turned down the flame until it was only a blue bead, and the room went dim, and everyone held their breath. Outside, the sea was calm, and the stars were very bright.

"Thank you," Ida said to the lamp, the way you would say it to an old friend at a station. Then she blew it out, and for one long moment the Greyhaven light was dark.

The engineer threw the switch below. The new lamp came on, white and hard and brilliant, and its beam swept out over the reef further than the old one had ever reached.

It was a good light. Everyone agreed on that. But when they walked down the ninety steps, nobody said much, and Mother Oyle's bottle went round twice before anyone spoke.

Ida kept the old lamp in the keeper's cottage, on the kitchen table, polished and cold. And on foggy nights, when the new light seemed too far and too bright, she lit it anyway, just for the window.
""",
    ),
)
