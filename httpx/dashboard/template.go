package dashboard

import "html/template"

// pageTemplate is parsed once; html/template escapes every value, which matters because endpoint names
// and error texts come from config and from upstreams. The charts' SVG is the one value passed through
// as is (see chart.SVG).
var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llmcache status</title>
<style>
:root{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa}
body{margin:0 auto;max-width:1320px;padding:14px 20px 24px}
header{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap}
h1{font-size:20px;margin:0}
h2{font-size:15px;margin:20px 0 8px}
.meta{color:#59636e}
.banner{background:#ffebe9;border:1px solid #cf222e;color:#82071e;padding:10px 14px;border-radius:6px;margin:12px 0;overflow-wrap:anywhere}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.tile,figure,table{background:#fff;border:1px solid #d1d9e0;border-radius:8px}
.tile{flex:1 1 auto;padding:8px 12px}
.tile .label,.sub{color:#59636e;font-size:12px;white-space:nowrap}
.tile .label{text-transform:uppercase;letter-spacing:.03em}
.tile .value{font-size:24px;font-weight:600;white-space:nowrap}
.tile.warn{border-color:#d4a72c;background:#fff8c5}
.tile.bad{border-color:#cf222e;background:#ffebe9}
.value,td{font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:10px}
figure{margin:0;padding:8px 10px 4px}
figcaption{display:flex;justify-content:space-between;gap:8px;font-weight:600}
figcaption span span{margin-left:10px;font-weight:400}
svg.chart{display:block;width:100%;height:auto}
.grid{fill:none;stroke:#eaeef2;stroke-width:1;vector-effect:non-scaling-stroke}
.axis{fill:#59636e;font-size:10px}
.empty{fill:#59636e;font-size:13px}
.line{fill:none;stroke-width:1.6;stroke-linejoin:round;stroke-linecap:round;vector-effect:non-scaling-stroke}
.c-hit{stroke:#1a7f37;color:#1a7f37}.c-req{stroke:#0969da;color:#0969da}
.c-p50{stroke:#0969da;color:#0969da}.c-p99{stroke:#bc4c00;color:#bc4c00}
table{border-collapse:separate;border-spacing:0;width:100%;overflow:hidden}
th,td{padding:6px 10px;text-align:right;border-bottom:1px solid #eaeef2;white-space:nowrap}
tr:last-child td{border-bottom:0}
th{font-size:12px;color:#59636e;font-weight:600;background:#f6f8fa}
th:first-child,td:first-child,td.err,th.err{text-align:left}
td.err{white-space:normal;overflow-wrap:anywhere;color:#82071e;min-width:200px;max-width:420px}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600}
.healthy{background:#dafbe1;color:#116329}.ejected{background:#ffebe9;color:#a40e26}
.probing{background:#fff8c5;color:#7d4e00}.unknown{background:#eaeef2;color:#59636e}
.outcomes{max-width:640px}
.bar{width:220px}.bar div{height:10px;border-radius:2px;min-width:1px}
.o-hit{background:#2da44e}.o-up{background:#54aeff}.o-err{background:#cf222e}.o-other{background:#8c959f}
.none{color:#59636e}
</style>
</head>
<body>
<header><h1>llmcache</h1><span class="meta">{{with .Version}}{{.}} · {{end}}{{with .Updated}}updated {{.}} · {{end}}up {{.Uptime}} · refreshes every {{.Refresh}} s</span></header>
{{- if .WriterError}}
<div class="banner" role="alert"><strong>Cache writer is failing:</strong> {{.WriterError}}<br>{{.Banner}}</div>
{{- end}}
<section class="tiles">
{{- range .Tiles}}
<div class="tile{{with .Class}} {{.}}{{end}}"><div class="label">{{.Label}}</div><div class="value">{{.Value}}</div>{{with .Sub}}<div class="sub">{{.}}</div>{{end}}</div>
{{- end}}
</section>
<section class="charts">
{{- range .Charts}}
<figure>
<figcaption>{{.Heading}}<span>{{range .Latest}}<span class="{{.Class}}">{{.Text}}</span>{{end}}</span></figcaption>
{{.SVG}}
</figure>
{{- end}}
</section>
<h2>Upstream endpoints</h2>
{{- if .Endpoints}}
<table>
<thead><tr><th>Endpoint</th><th>Health</th><th>Weight</th><th>Calls</th><th>Errors</th><th>Retries</th><th>Ejections</th><th>In flight</th><th>p50</th><th>p99</th><th class="err">Last error</th></tr></thead>
<tbody>
{{- range .Endpoints}}
<tr><td>{{.Name}}</td><td><span class="badge {{.HealthClass}}">{{.Health}}</span></td><td>{{.Weight}}</td><td>{{.Calls}}</td><td>{{.Errors}}</td><td>{{.Retries}}</td><td>{{.Ejections}}</td><td>{{.InFlight}}</td><td>{{.P50}}</td><td>{{.P99}}</td><td class="err" title="{{.LastErrorFull}}">{{.LastError}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="none">No upstream endpoints reported.</p>
{{- end}}
{{- if .Batches}}
<h2>Running batches</h2>
<table class="outcomes">
<thead><tr><th>Batch</th><th>Endpoint</th><th>Status</th><th>Completed</th><th>Failed</th><th>Total</th><th>Running for</th><th>Done</th><th></th></tr></thead>
<tbody>
{{- range .Batches}}
<tr><td>{{.ID}}</td><td>{{.Endpoint}}</td><td>{{.Status}}</td><td>{{.Completed}}</td><td>{{.Failed}}</td><td>{{.Total}}</td><td>{{.Age}}</td><td>{{.Done}}</td><td class="bar"><div class="o-hit" style="width:{{.Width}}"></div></td></tr>
{{- end}}
</tbody>
</table>
{{- end}}
<h2>Requests by outcome</h2>
{{- if .Outcomes}}
<table class="outcomes">
<thead><tr><th>Outcome</th><th>Requests</th><th>Share</th><th></th></tr></thead>
<tbody>
{{- range .Outcomes}}
<tr><td>{{.Name}}</td><td>{{.Value}}</td><td>{{.Share}}</td><td class="bar"><div class="{{.Class}}" style="width:{{.Width}}"></div></td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="none">No requests yet.</p>
{{- end}}
</body>
</html>
`))
