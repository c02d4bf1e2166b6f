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
