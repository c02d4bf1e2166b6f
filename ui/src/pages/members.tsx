import { useEffect, useState } from "preact/hooks";
import { api, Page } from "../api";
import { TimeChart } from "../chart";

interface Member { device_id: string; state: string; wave: number | null; retry: number; progress: number | null; updated_at: string }

const STATES = ["", "assigned", "notified", "downloading", "downloaded", "installing", "succeeded", "failed", "rejected", "timed_out", "cancelled", "rolled_back"];
const FAILED = ["failed", "rejected", "timed_out"];

/** A campaign's devices by state, and successes and failures over time. */
export function Members(props: { id: string; version: string }) {
  const [state, setState] = useState("");
  const [page, setPage] = useState<Page<Member> | null>(null);
  const [all, setAll] = useState<Member[]>([]);
  useEffect(() => {
    const filter = state ? `&state=${state}` : "";
    api<Page<Member>>("GET", `/campaigns/${props.id}/devices?page_size=100${filter}`).then(setPage).catch(() => undefined);
    api<Page<Member>>("GET", `/campaigns/${props.id}/devices?page_size=500`).then((p) => setAll(p.items)).catch(() => undefined);
  }, [props.id, props.version, state]);
  // Per wave, cumulative successes and failures at each moment a device ended.
  const ended = all.filter((m) => m.state === "succeeded" || FAILED.includes(m.state))
    .map((m) => ({ t: Math.floor(new Date(m.updated_at).getTime() / 1000), ok: m.state === "succeeded", wave: m.wave ?? 0 }))
    .sort((a, b) => a.t - b.t);
  const waves = [...new Set(ended.map((e) => e.wave))].sort((a, b) => a - b);
  const x = [...new Set(ended.map((e) => e.t))];
  const palette = ["#2e9e5b", "#4a90e2", "#8e44ad", "#e67e22", "#16a085"];
  const series = waves.flatMap((w, i) => [true, false].map((ok) => {
    let n = 0;
    const values = x.map((t) => { n += ended.filter((e) => e.t === t && e.wave === w && e.ok === ok).length; return n; });
    return { label: `wave ${w + 1} ${ok ? "succeeded" : "failed"}`, values, color: ok ? palette[i % palette.length] : "#d1453b" };
  })).filter((s) => s.values[s.values.length - 1] > 0);
  return (
    <>
      {x.length > 1 && <TimeChart title="Devices finished over time, per wave" x={x} series={series} />}
      <h2>Devices</h2>
      <label for="member-state">State</label>{" "}
      <select id="member-state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
        {STATES.map((s) => <option key={s} value={s}>{s || "any"}</option>)}
      </select>
      <table>
        <thead><tr><th>Device</th><th>Wave</th><th>State</th><th>Progress</th><th>Retry</th><th>Updated</th></tr></thead>
        <tbody>{page?.items.map((m) => (
          <tr key={m.device_id}>
            <td><a href={`/ui/devices/${encodeURIComponent(m.device_id)}`}>{m.device_id}</a></td>
            <td>{m.wave === null ? "" : m.wave + 1}</td><td>{m.state}</td>
            <td>{m.progress === null ? "" : `${m.progress} %`}</td><td>{m.retry}</td>
            <td>{new Date(m.updated_at).toLocaleString()}</td>
          </tr>
        ))}</tbody>
      </table>
      {page && <p class="muted" data-testid="members-total">{page.total} devices{state ? ` ${state}` : ""}</p>}
    </>
  );
}
