using Headlight.Kernels;
using Headlight.Models;

// An attribution method the library does not have, written on its public pass API: input × gradient against a
// custom baseline, score[t] = Σ_d (x − x′)[t, d]·∂F/∂x[t, d], with x′ the sentence's mean word embedding and F the
// cosine similarity of the sentence embedding (mean pooling) to a query's embedding.
using var device = Device.Open();
using var model = Model.Load("minilm", device);
float[] query = model.Embed(["How do I reset my password?"])[0];
var batch = model.Tokenize(["Open Settings, choose Account and click Reset password."]);
int seq = batch.SequenceLength, d = model.Config.Hidden, n = batch.Lengths[0];

float[] x, gradient;
double cosine;
using (var pass = model.Run(PassRequest.For(batch) with { Backward = new BackwardOptions { Rule = BackwardRule.Gradient } }))
{
    // e = mean of the last hidden state [seq, d] over the tokens; F = cos(e, q); dF/dh[t] = (q̂ − F·ê) / (‖e‖·n).
    float[] hidden = pass.LastHiddenState.ToArray();
    var e = new double[d];
    for (int t = 0; t < n; t++)
    {
        for (int i = 0; i < d; i++)
        {
            e[i] += hidden[(t * d) + i] / (double)n;
        }
    }

    double eNorm = Math.Sqrt(e.Sum(v => v * v));
    double qNorm = Math.Sqrt(query.Sum(v => (double)v * v));
    cosine = e.Select((v, i) => v * query[i]).Sum() / (eNorm * qNorm);
    var seed = new float[seq * d];
    for (int t = 0; t < n; t++)
    {
        for (int i = 0; i < d; i++)
        {
            seed[(t * d) + i] = (float)(((query[i] / qNorm) - (cosine * e[i] / eNorm)) / (eNorm * n));
        }
    }

    pass.Backward(seed);
    x = pass.TokenEmbeddings.ToArray();   // [seq, d] the word embeddings the pass ran on
    gradient = pass.InputSignal.ToArray(); // [seq, d] dF/dx
}

var baseline = new double[d];
for (int t = 0; t < n; t++)
{
    for (int i = 0; i < d; i++)
    {
        baseline[i] += x[(t * d) + i] / (double)n;
    }
}

Console.WriteLine($"input x gradient (mean-embedding baseline) on {model.Device.Name}: similarity {cosine:F4}");
for (int t = 0; t < n; t++)
{
    double score = Enumerable.Range(0, d).Sum(i => (x[(t * d) + i] - baseline[i]) * gradient[(t * d) + i]);
    Console.WriteLine($"{batch.Texts[0].Tokens[t],-10} {score,9:F5}");
}
