using Headlight.Explain;
using Headlight.Explain.Census;
using Headlight.Explain.Report;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;
using Microsoft.Playwright;

namespace Headlight.Tests.Report;

/// <summary>
/// The HTML report in headless Chromium (Debian's <c>chromium</c>, driven through Microsoft.Playwright with
/// <c>ExecutablePath</c>; Playwright's own browsers are never downloaded): it renders, logs no console errors, makes
/// no network requests, and clicking a head shows its full pattern. Skips when chromium is not installed
/// (scripts/install-chromium.sh installs it; CI runs that script first).
/// </summary>
public sealed class ReportBrowserTests : IDisposable
{
    private readonly TinyModel encoder = TinyModel.Bert(9600, TinyHead.MeanPooling);
    private readonly TempFolder temp = new();

    public void Dispose()
    {
        encoder.Dispose();
        temp.Dispose();
    }

    /// <summary><c>HEADLIGHT_CHROMIUM</c>, else <c>chromium</c> or <c>chromium-browser</c> on PATH; null if none.</summary>
    internal static string? FindChromium()
    {
        if (Environment.GetEnvironmentVariable("HEADLIGHT_CHROMIUM") is { Length: > 0 } given)
        {
            return File.Exists(given) ? given : null;
        }

        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return new[] { "chromium", "chromium-browser" }.SelectMany(n => dirs.Select(d => Path.Combine(d, n))).FirstOrDefault(File.Exists);
    }

    [SkippableFact]
    public async Task Report_renders_without_errors_or_requests_and_a_click_shows_the_head()
    {
        string? chromium = FindChromium();
        Skip.If(chromium is null, "chromium is not installed (run scripts/install-chromium.sh, or set HEADLIGHT_CHROMIUM to a Chromium binary)");

        string path = temp.File("report.html");
        int tokens;
        using (var model = Headlight.Models.Model.Load(encoder.Folder, Backends.Require("cpu")))
        {
            var batch = model.Tokenize(["w7 w12 w9 w20"]);
            tokens = batch.Texts[0].Count;
            var target = new EmbeddingSimilarityTarget("w5 w6");
            var results = new[]
            {
                Explainer.Explain(model, batch, target, new IntegratedGradientsOptions { Steps = 4 }),
                Explainer.Explain(model, batch, target, new GradientXInputOptions()),
            };
            var census = HeadCensus.Run(model, new CensusOptions { ControlSeeds = [1], AblationTexts = 4 });
            var report = new ExplanationReport(model.Name, model.Device.Name, target.Description, results, AttentionPatterns.Capture(model, batch),
                [CensusHtml.Section(census)]);
            await File.WriteAllTextAsync(path, ReportHtml.Page(report));
        }

        // Only the bundled driver is used; it must not try to fetch a browser.
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        var page = await browser.NewPageAsync();
        var problems = new List<string>();
        var requests = new List<string>();
        page.Console += (_, m) =>
        {
            if (m.Type is "error" or "warning")
            {
                problems.Add($"console {m.Type}: {m.Text}");
            }
        };
        page.PageError += (_, e) => problems.Add($"page error: {e}");
        page.Request += (_, r) => requests.Add(r.Url);

        string url = new Uri(path).AbsoluteUri;
        await page.GotoAsync(url, new PageGotoOptions { WaitUntil = WaitUntilState.Load });

        // Heat maps: one row per method; check table; the head grid: layers × heads thumbnails.
        Assert.Equal(2, await page.Locator("table.heatmap tbody tr").CountAsync());
        Assert.Equal(tokens, await page.Locator("table.heatmap tbody tr[data-method='integrated-gradients'] td.tok").CountAsync());
        Assert.Equal(2, await page.Locator("tr.check").CountAsync());
        Assert.Equal(2 * TinyModel.Heads, await page.Locator("canvas.head").CountAsync());
        Assert.Equal(1, await page.Locator("section.census").CountAsync());
        Assert.True(await page.Locator("section.census img").CountAsync() > 0);

        // The first head is shown on load; a click on another shows that one.
        Assert.Equal(tokens * tokens, await page.Locator("#pattern svg rect.cell").CountAsync());
        var head = page.Locator("canvas.head[data-layer='1'][data-head='1']");
        Assert.True(await head.IsVisibleAsync());
        await head.ClickAsync();
        var svg = page.Locator("#pattern svg");
        Assert.Equal("1", await svg.GetAttributeAsync("data-layer"));
        Assert.Equal("1", await svg.GetAttributeAsync("data-head"));
        Assert.Equal(tokens * tokens, await page.Locator("#pattern svg rect.cell").CountAsync());
        Assert.StartsWith("Layer 1, head 1", await page.Locator("#pattern-title").InnerTextAsync(), StringComparison.Ordinal);
        Assert.Contains("sel", await head.GetAttributeAsync("class") ?? string.Empty, StringComparison.Ordinal);

        // The thumbnail was drawn (not a blank canvas): its box has a size and the page scripts ran without errors.
        var box = await head.BoundingBoxAsync();
        Assert.NotNull(box);
        Assert.True(box.Width > 10 && box.Height > 10);

        Assert.Empty(problems);
        Assert.Equal([url], requests.Distinct());
    }
}
