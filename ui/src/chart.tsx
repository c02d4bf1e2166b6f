// Charts through uPlot (a small, fast canvas chart library).
import uPlot from "uplot";
import { useEffect, useRef } from "preact/hooks";

/** Lines over time: `x` in Unix seconds, one array of values per series. */
export function TimeChart(props: { title: string; x: number[]; series: { label: string; values: number[]; color: string }[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    const options: uPlot.Options = {
      title: props.title,
      width: Math.min(box.current.clientWidth || 900, 1100),
      height: 220,
      series: [{}, ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 2 }))],
      axes: [{}, { label: "devices" }],
    };
    const chart = new uPlot(options, [props.x, ...props.series.map((s) => s.values)], box.current);
    return () => chart.destroy();
  }, [JSON.stringify(props)]);
  return <div ref={box} class="chart" role="img" aria-label={props.title} />;
}

/** Bars, one per label. */
export function BarChart(props: { title: string; labels: string[]; values: number[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    const x = props.labels.map((_, i) => i);
    const options: uPlot.Options = {
      title: props.title,
      width: Math.min(box.current.clientWidth || 900, 1100),
      height: 200,
      scales: { x: { time: false, range: [-0.5, props.labels.length - 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(max, 1)] } },
      series: [{}, { label: "devices", fill: "#4a90e2", stroke: "#4a90e2", paths: uPlot.paths.bars!({ size: [0.6, 80] }) }],
      axes: [{ values: (_u, ticks) => ticks.map((t) => props.labels[t] ?? ""), splits: () => x }, {}],
      legend: { show: false },
    };
    const chart = new uPlot(options, [x, props.values], box.current);
    return () => chart.destroy();
  }, [JSON.stringify(props)]);
  return <div ref={box} class="chart" role="img" aria-label={`${props.title}: ${props.labels.map((l, i) => `${l} ${props.values[i]}`).join(", ")}`} />;
}
