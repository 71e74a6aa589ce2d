namespace Headlight.Explain;

/// <summary>
/// The built-in cases of the faithfulness benchmark: short queries, each with a document that answers it, written
/// for this project across topics (science, cooking, travel, health, code, finance, sport, history). The target is
/// the cosine similarity of the document's sentence embedding to the query's: which words make the document match.
/// </summary>
internal static class QueryDocumentPairs
{
    /// <summary>The pairs, (query, document).</summary>
    public static IReadOnlyList<(string Query, string Document)> All { get; } =
    [
        ("how do plants make food", "Leaves capture sunlight and turn water and carbon dioxide into sugar by photosynthesis."),
        ("best way to cook rice", "Rinse the rice, simmer it covered with twice as much water, then let it rest."),
        ("symptoms of the flu", "Influenza usually brings fever, a sore throat, muscle aches and a dry cough."),
        ("why is the sky blue", "Air molecules scatter short blue wavelengths of sunlight far more than red ones."),
        ("how to reverse a list in python", "Call the reverse method on the list, or slice it with a step of minus one."),
        ("cheap flights to paris", "Budget airlines offer low fares to Paris if you book early and travel midweek."),
        ("who painted the mona lisa", "Leonardo da Vinci painted the Mona Lisa in Florence in the early sixteenth century."),
        ("how to save money on groceries", "Plan weekly meals, buy store brands and avoid shopping when you are hungry."),
        ("what causes earthquakes", "Earthquakes happen when tectonic plates slip suddenly along a fault and release stress."),
        ("rules of chess castling", "Castling moves the king two squares toward a rook, which then jumps over the king."),
        ("how does a vaccine work", "A vaccine trains the immune system to recognise a virus before a real infection."),
        ("tips for running a marathon", "Build mileage slowly, practise drinking on long runs and taper before race day."),
        ("when did the roman empire fall", "The western Roman Empire ended in 476 when its last emperor was deposed."),
        ("how to fix a flat bike tire", "Remove the wheel, find the puncture in the tube, patch it and pump it up again."),
        ("what is inflation", "Inflation is the rate at which prices rise and the value of money falls over time."),
        ("how to train a puppy", "Reward your puppy with treats each time it sits, and keep training sessions short."),
        ("benefits of drinking water", "Drinking enough water keeps you hydrated, helps digestion and supports your kidneys."),
        ("how do black holes form", "A black hole forms when a massive star collapses under its own gravity."),
        ("how to write a cover letter", "A good cover letter explains why you fit the job and names your key achievements."),
        ("how to grow tomatoes", "Tomatoes need full sun, rich soil, regular watering and a stake to climb."),
        ("what is machine learning", "Machine learning lets computers learn patterns from data instead of following fixed rules."),
        ("how to reduce stress", "Regular exercise, enough sleep and slow breathing all help to lower stress."),
        ("what do pandas eat", "Giant pandas eat bamboo almost exclusively, chewing for many hours every day."),
        ("how to learn a new language", "Practise speaking daily, learn common words first and listen to native speakers."),
    ];

    /// <summary>The pairs as benchmark cases: explain the document, target = cosine similarity to the query.</summary>
    public static IReadOnlyList<FaithfulnessCase> Cases(int? count = null) =>
        All.Take(count ?? All.Count).Select(p => new FaithfulnessCase(p.Document, new EmbeddingSimilarityTarget(p.Query))).ToArray();
}
