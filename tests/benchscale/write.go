package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The scale section of docs/benchmarks.md lies between these lines; the
// rest of the file is the other benches' and is left as it is.
const (
	beginMark = "<!-- bench-scale: begin (written by make bench-scale) -->"
	endMark   = "<!-- bench-scale: end -->"
)

// table is the section's text: the command, the table and the plot.
func table(results []step, perNode int, rest time.Duration, plot string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s with `make bench-scale` (tests/benchscale: one `kasa server --disable-agent` on SQLite, "+
		"kwok's controller for the nodes, %d pods per node from Deployments, then %s at rest with the nodes' lease heartbeats "+
		"every 10 s). Latencies are the API server's own (`apiserver_request_duration_seconds`, every request of the step, "+
		"the ramp included; a quantile past the histogram's last bound, 60 s, would show as 60 s).\n\n",
		time.Now().UTC().Format("2006-01-02"), machine(), perNode, rest)
	b.WriteString("| nodes | pods | every pod Running after | GET p50 / p99 | LIST p50 / p99 | mutating p50 / p99 | requests | server RSS (peak) | CPU (cores) | SQLite file |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %d | %d | %.0f s | %s | %s | %s | %d | %.0f MiB (%.0f MiB) | %.2f | %.0f MiB |\n",
			r.Nodes, r.Pods, r.Ramp.Seconds(), pair(r.Get), pair(r.List), pair(r.Write), r.Requests, r.RSSMiB, r.HWMMiB, r.CPU, r.DBMiB)
	}
	b.WriteString("\nTargets at 500 nodes and 15,000 pods: mutating and GET p99 < 1 s, LIST p99 < 5 s, RSS < 1.5 GiB.\n")
	if plot != "" {
		fmt.Fprintf(&b, "\n![p99 latency and the server's memory against the node count](%s)\n", plot)
	}
	return b.String()
}

func pair(l latency) string { return secs(l.P50) + " / " + secs(l.P99) }

// write prints the table and puts it, and the plot, into the documents.
func write(results []step, perNode int, rest time.Duration, doc, plot string) error {
	rel := ""
	if plot != "" && doc != "" {
		var err error
		if rel, err = filepath.Rel(filepath.Dir(doc), plot); err != nil {
			return err
		}
	}
	text := table(results, perNode, rest, rel)
	fmt.Print(text)
	if plot != "" {
		if err := os.WriteFile(plot, []byte(svg(results)), 0o644); err != nil {
			return err
		}
	}
	if doc == "" {
		return nil
	}
	old, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q lines to write between", doc, beginMark, endMark)
	}
	s = s[:i+len(beginMark)] + "\n" + text + s[j:]
	return os.WriteFile(doc, []byte(s), 0o644)
}

// svg draws two panels against the node count: the p99 latencies (GET,
// LIST, mutating; seconds, logarithmic) and the server's RSS (MiB).
func svg(results []step) string {
	const w, h, pad = 760, 300, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	maxNodes := float64(results[len(results)-1].Nodes)
	panel := func(x0 int, title string, lines []series, ymin, ymax float64, logY bool, unit string) {
		pw, ph := w/2-pad-20, h-2*pad
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, pad-20, title)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0, pad, pw, ph)
		fy := func(v float64) float64 {
			if logY {
				lv, lo, hi := math.Log10(math.Max(v, ymin)), math.Log10(ymin), math.Log10(ymax)
				return float64(pad+ph) - (lv-lo)/(hi-lo)*float64(ph)
			}
			return float64(pad+ph) - (v-ymin)/(ymax-ymin)*float64(ph)
		}
		fx := func(n float64) float64 { return float64(x0) + n/maxNodes*float64(pw) }
		for _, r := range results {
			fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%d</text>`+"\n", fx(float64(r.Nodes)), pad+ph+15, r.Nodes)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">nodes</text>`+"\n", x0+pw/2, pad+ph+30)
		for _, t := range ticks(ymin, ymax, logY) {
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s%s</text>`+"\n",
				x0, x0+pw, fy(t), fy(t), x0-4, fy(t)+4, trim(t), unit)
		}
		for i, l := range lines {
			var pts []string
			for k, v := range l.values {
				if !math.IsNaN(v) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(float64(results[k].Nodes)), fy(v)))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", l.color, strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", x0+8, pad+14+14*i, l.color, l.name)
		}
	}
	var get, list, mut, rss []float64
	for _, r := range results {
		get, list, mut, rss = append(get, r.Get.P99), append(list, r.List.P99), append(mut, r.Write.P99), append(rss, r.RSSMiB)
	}
	panel(pad, "API p99 latency (s)", []series{{"GET", "#1f77b4", get}, {"LIST", "#ff7f0e", list}, {"mutating", "#2ca02c", mut}},
		0.001, 10, true, "")
	top := 1536.0
	for _, v := range rss {
		top = math.Max(top, v*1.1)
	}
	panel(w/2+pad, "server RSS (MiB; the target 1536)", []series{{"RSS", "#9467bd", rss}, {"target", "#d62728", fill(len(rss), 1536)}},
		0, top, false, "")
	b.WriteString("</svg>\n")
	return b.String()
}

type series struct {
	name, color string
	values      []float64
}

func fill(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func ticks(lo, hi float64, logY bool) []float64 {
	var t []float64
	if logY {
		for v := lo; v <= hi*1.0001; v *= 10 {
			t = append(t, v)
		}
		return t
	}
	step := math.Pow(10, math.Floor(math.Log10(hi-lo)))
	if (hi-lo)/step < 4 {
		step /= 2
	}
	for v := lo; v <= hi; v += step {
		t = append(t, v)
	}
	return t
}

func trim(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}
