using System.Globalization;
using System.Net;
using System.Text;

namespace Headlight.Explain.Report;

/// <summary>
/// The explanation report as one self-contained HTML page: inline CSS, inline SVG and a small inline script, no
/// external resources and no network requests. Sections: per-method token heat maps side by side, the check figures
/// and timings, the attention head grid (layers × heads thumbnails; clicking one draws its full pattern) and any
/// extra sections (the head census).
/// </summary>
internal static class ReportHtml
{
    private const string Style = """
        body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
        h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
        .meta{color:#555}
        table{border-collapse:collapse;margin:.5em 0}
        td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;font-variant-numeric:tabular-nums}
        th.m,td.m{text-align:left;white-space:nowrap}
        .scroll{overflow-x:auto}
        table.heatmap td.tok{text-align:center;font-family:ui-monospace,monospace;font-size:.85em;padding:4px 5px}
        table.heatmap th.tok{font-family:ui-monospace,monospace;font-weight:normal;font-size:.8em;writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;padding:4px 2px}
        .special{color:#888;font-style:italic}
        .words{line-height:2em;margin:.2em 0}
        .words .w{padding:2px 4px;border-radius:3px;margin-right:2px}
        .words .name{display:inline-block;width:12em;color:#555}
        #grid{display:grid;gap:3px;align-items:center;justify-items:center}
        #grid .lbl{font-size:.75em;color:#555}
        canvas.head{width:40px;height:40px;image-rendering:pixelated;border:2px solid #ccc;cursor:pointer}
        canvas.head.sel{border-color:#d62728}
        #pattern svg text{font-family:ui-monospace,monospace;font-size:10px}
        .legend span{display:inline-block;width:2.4em;text-align:center;font-size:.75em}
        """;

    // Thumbnails are drawn on canvases from the inline data; a click draws the head's full pattern as SVG.
    private const string Script = """
        (function(){
          var data = JSON.parse(document.getElementById('attention-data').textContent);
          var T = data.tokens.length, L = data.layers, H = data.heads;
          function at(l, h, q, k){ return data.p[((l*H + h)*T + q)*T + k]; }
          document.querySelectorAll('canvas.head').forEach(function(c){
            var l = +c.dataset.layer, h = +c.dataset.head;
            c.width = T; c.height = T;
            var ctx = c.getContext('2d'), img = ctx.createImageData(T, T);
            for (var q = 0; q < T; q++) for (var k = 0; k < T; k++) {
              var v = Math.round(255 * (1 - Math.min(1, at(l, h, q, k)))), i = 4*(q*T + k);
              img.data[i] = v; img.data[i+1] = v; img.data[i+2] = 255; img.data[i+3] = 255;
            }
            ctx.putImageData(img, 0, 0);
            c.addEventListener('click', function(){ show(l, h); });
          });
          var NS = 'http://www.w3.org/2000/svg';
          function el(name, attrs, text){
            var e = document.createElementNS(NS, name);
            for (var a in attrs) e.setAttribute(a, attrs[a]);
            if (text !== undefined) e.textContent = text;
            return e;
          }
          function show(l, h){
            document.querySelectorAll('canvas.head.sel').forEach(function(c){ c.classList.remove('sel'); });
            var c = document.querySelector('canvas.head[data-layer="' + l + '"][data-head="' + h + '"]');
            if (c) c.classList.add('sel');
            var cell = Math.max(8, Math.min(28, Math.floor(560 / T))), pad = 110;
            var size = pad + cell*T + 10;
            var svg = el('svg', {width: size, height: size, viewBox: '0 0 ' + size + ' ' + size, 'data-layer': l, 'data-head': h});
            for (var i = 0; i < T; i++) {
              svg.appendChild(el('text', {x: pad - 4, y: pad + cell*i + cell*0.7, 'text-anchor': 'end'}, data.tokens[i]));
              var x = pad + cell*i + cell*0.7;
              svg.appendChild(el('text', {x: x, y: pad - 4, transform: 'rotate(-90 ' + x + ' ' + (pad - 4) + ')'}, data.tokens[i]));
            }
            for (var q = 0; q < T; q++) for (var k = 0; k < T; k++) {
              var p = at(l, h, q, k), v = Math.round(255 * (1 - Math.min(1, p)));
              var r = el('rect', {'class': 'cell', x: pad + cell*k, y: pad + cell*q, width: cell, height: cell, fill: 'rgb(' + v + ',' + v + ',255)'});
              r.appendChild(el('title', {}, data.tokens[q] + ' \u2192 ' + data.tokens[k] + ': ' + p.toFixed(3)));
              svg.appendChild(r);
            }
            var box = document.getElementById('pattern');
            box.replaceChildren(svg);
            document.getElementById('pattern-title').textContent = 'Layer ' + l + ', head ' + h + ': each row is a query token, each column the key it attends to';
          }
          if (L > 0 && H > 0) show(0, 0);
        })();
        """;

    /// <summary>The report as a standalone HTML page.</summary>
    public static string Page(ExplanationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var s = new StringBuilder();
        s.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")
            .Append("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n")
            .Append("<title>Headlight: ").Append(E(report.Target)).Append("</title>\n<style>").Append(Style).Append("</style></head><body>\n");
        s.Append("<h1>Headlight explanation</h1>\n");
        s.Append(Inv($"<p class=\"meta\">Model <b>{E(report.Model)}</b> on {E(report.Device)}. Target: <b>{E(report.Target)}</b>. Methods: {E(string.Join(", ", report.Results.Select(r => r.Method)))}.</p>\n"));
        s.Append("<p class=\"meta legend\">Colour: ");
        foreach (double v in new[] { -1, -0.5, 0, 0.5, 1 })
        {
            var bg = ScoreColors.Background(v);
            s.Append(Inv($"<span style=\"background:{ScoreColors.Hex(bg)};color:{ScoreColors.Hex(ScoreColors.Foreground(v))}\">{v:+0.0;-0.0;0}</span>"));
        }

        s.Append(" of each method's largest |score| on the text (special tokens left out of the scale).</p>\n");
        for (int row = 0; row < report.Rows; row++)
        {
            HeatMaps(s, report, row);
        }

        Checks(s, report);
        if (report.Attention is { } attention)
        {
            Heads(s, attention);
        }

        foreach (string section in report.Sections)
        {
            s.Append(section).Append('\n');
        }

        s.Append("</body></html>\n");
        return s.ToString();
    }

    private static void HeatMaps(StringBuilder s, ExplanationReport report, int row)
    {
        var first = report.Results[0].Rows[row];
        s.Append(Inv($"<section class=\"input\" data-row=\"{row}\">\n<h2>Input {row + 1}: {E(first.Input.Text)}</h2>\n"));
        s.Append("<div class=\"scroll\"><table class=\"heatmap\"><thead><tr><th class=\"m\">method</th>");
        foreach (var (token, i) in first.Tokens.Select((t, i) => (t, i)))
        {
            s.Append(Inv($"<th class=\"tok{(first.IsSpecial[i] ? " special" : string.Empty)}\">{E(token)}</th>"));
        }

        s.Append("</tr></thead><tbody>\n");
        foreach (var result in report.Results)
        {
            var a = result.Rows[row];
            double scale = ScoreColors.Scale(a.TokenScores, a.IsSpecial);
            s.Append(Inv($"<tr data-method=\"{E(result.Method)}\"><td class=\"m\">{E(result.Method)}</td>"));
            for (int t = 0; t < a.TokenScores.Count; t++)
            {
                double n = ScoreColors.Normalize(a.TokenScores[t], scale);
                s.Append(Inv($"<td class=\"tok\" style=\"background:{ScoreColors.Hex(ScoreColors.Background(n))};color:{ScoreColors.Hex(ScoreColors.Foreground(n))}\" title=\"{E(a.Tokens[t])}: {a.TokenScores[t]:G6}\">{n:+0.00;-0.00;0}</td>"));
            }

            s.Append("</tr>\n");
        }

        s.Append("</tbody></table></div>\n<div class=\"wordviews\">\n");
        foreach (var result in report.Results)
        {
            var a = result.Rows[row];
            var scores = a.Words.Select(w => w.Score).ToArray();
            double scale = ScoreColors.Scale(scores);
            s.Append(Inv($"<div class=\"words\" data-method=\"{E(result.Method)}\"><span class=\"name\">{E(result.Method)}</span>"));
            foreach (var w in a.Words)
            {
                double n = ScoreColors.Normalize(w.Score, scale);
                s.Append(Inv($"<span class=\"w\" style=\"background:{ScoreColors.Hex(ScoreColors.Background(n))};color:{ScoreColors.Hex(ScoreColors.Foreground(n))}\" title=\"{w.Score:G6}\">{E(w.Text)}</span> "));
            }

            s.Append("</div>\n");
        }

        s.Append("</div>\n</section>\n");
    }

    private static void Checks(StringBuilder s, ExplanationReport report)
    {
        s.Append("<section id=\"checks\">\n<h2>Check figures and timings</h2>\n");
        s.Append("<p class=\"meta\">Completeness (integrated gradients), conservation (LRP) and efficiency (SHAP) say how far the scores' sum is from the change of the target they claim to explain; 0 is exact. Methods without such a figure show none.</p>\n");
        s.Append("<table><thead><tr><th class=\"m\">method</th><th>input</th><th>target F(x)</th><th>baseline</th><th class=\"m\">check</th><th>value</th><th>share of change (of F where no baseline)</th><th>Σ scores</th><th>time (ms)</th><th>rows run</th></tr></thead><tbody>\n");
        foreach (var result in report.Results)
        {
            for (int r = 0; r < result.Rows.Count; r++)
            {
                var a = result.Rows[r];
                double change = a.TargetValue - (a.BaselineValue ?? 0);
                string share = a.Check is { } c && change != 0 ? Inv($"{100 * Math.Abs(c.Value / change):G3}%") : string.Empty;
                string time = r == 0 ? Inv($"{result.Elapsed.TotalMilliseconds:F0}") : string.Empty;
                string passes = r == 0 ? result.Passes.ToString(CultureInfo.InvariantCulture) : string.Empty;
                s.Append(Inv($"<tr class=\"check\" data-method=\"{E(result.Method)}\"><td class=\"m\">{E(result.Method)}</td><td>{r + 1}</td><td>{a.TargetValue:0.00000}</td><td>{(a.BaselineValue is { } b ? b.ToString("0.00000", CultureInfo.InvariantCulture) : string.Empty)}</td>"));
                s.Append(Inv($"<td class=\"m\" title=\"{E(a.Check?.Meaning ?? string.Empty)}\">{E(a.Check?.Name ?? "—")}</td><td>{(a.Check is { } check ? check.Value.ToString("E2", CultureInfo.InvariantCulture) : string.Empty)}</td><td>{share}</td><td>{a.TokenScores.Sum():0.00000}</td><td>{time}</td><td>{passes}</td></tr>\n"));
            }
        }

        s.Append("</tbody></table>\n</section>\n");
    }

    private static void Heads(StringBuilder s, AttentionPatterns attention)
    {
        s.Append(Inv($"<section id=\"heads\">\n<h2>Attention heads</h2>\n<p class=\"meta\">{attention.Layers} layers × {attention.Heads} heads on input 1 ({attention.Tokens.Count} tokens). Click a head to see its full pattern.</p>\n"));
        s.Append(Inv($"<div id=\"grid\" style=\"grid-template-columns:auto repeat({attention.Heads},auto)\">\n<span></span>"));
        for (int h = 0; h < attention.Heads; h++)
        {
            s.Append(Inv($"<span class=\"lbl\">H{h}</span>"));
        }

        for (int l = 0; l < attention.Layers; l++)
        {
            s.Append(Inv($"\n<span class=\"lbl\">L{l}</span>"));
            for (int h = 0; h < attention.Heads; h++)
            {
                s.Append(Inv($"<canvas class=\"head\" data-layer=\"{l}\" data-head=\"{h}\" title=\"layer {l}, head {h}\"></canvas>"));
            }
        }

        s.Append("\n</div>\n<h3 id=\"pattern-title\"></h3>\n<div id=\"pattern\" class=\"scroll\"></div>\n</section>\n");

        // The data as JSON in a non-executed script element; "</" cannot occur in it (tokens are escaped below).
        s.Append("<script type=\"application/json\" id=\"attention-data\">{\"tokens\":[");
        s.Append(string.Join(",", attention.Tokens.Select(JsonString)));
        s.Append(Inv($"],\"layers\":{attention.Layers},\"heads\":{attention.Heads},\"p\":["));
        var p = attention.Probabilities;
        for (int i = 0; i < p.Length; i++)
        {
            if (i > 0)
            {
                s.Append(',');
            }

            s.Append(Math.Round(p[i], 4).ToString("0.####", CultureInfo.InvariantCulture));
        }

        s.Append("]}</script>\n<script>").Append(Script).Append("</script>\n");
    }

    // A JSON string literal safe inside a <script> element.
    private static string JsonString(string text)
    {
        var s = new StringBuilder("\"");
        foreach (char c in text)
        {
            s.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                < ' ' => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return s.Append('"').ToString();
    }

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string E(string text) => WebUtility.HtmlEncode(text);
}
