import { useEffect, useState } from "preact/hooks";
import { api, Campaign, errorText, Page } from "../api";
import { useLive } from "../live";
import { ActivityFeed } from "../activity";
import { BarChart } from "../chart";

interface Stats {
  devices: number;
  devices_by_firmware: Record<string, number>;
  firmware: number;
  campaigns_by_status: Record<string, number>;
  updates_by_state: Record<string, number>;
  success_rate: number | null;
}

interface Probe { ok: boolean; [key: string]: unknown }
interface Health {
  status: string;
  postgres: Probe;
  nats: Probe;
  object_store: Probe;
  relay: Probe & { unpublished_events?: number };
  projections: { name: string; applied: number; last_global_seq: number; lag?: number }[];
}

/** Counts with a bar for each share of the whole. */
function Shares(props: { title: string; counts: Record<string, number>; label: string }) {
  const total = Object.values(props.counts).reduce((a, b) => a + b, 0);
  return (
    <section class="panel">
      <h2>{props.title}</h2>
      <table>
        <thead><tr><th>{props.label}</th><th>Count</th><th>Share</th></tr></thead>
        <tbody>
          {Object.entries(props.counts).map(([k, v]) => (
            <tr key={k}><th scope="row">{k}</th><td>{v}</td>
              <td><span class="share" style={{ width: `${total ? (v * 100) / total : 0}%` }} />{total ? Math.round((v * 100) / total) : 0} %</td></tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function Overview() {
  const [stats, setStats] = useState<Stats | null>(null);
  const [health, setHealth] = useState<Health | null>(null);
  const [recent, setRecent] = useState<Campaign[]>([]);
  const [error, setError] = useState<string | null>(null);
  // Where the activity feed starts: set once, so a refresh does not restart it.
  const [feedFrom, setFeedFrom] = useState<number | null>(null);
  const load = () => {
    api<Stats>("GET", "/stats").then(setStats).catch((e) => setError(errorText(e)));
    api<Page<Campaign>>("GET", "/campaigns?page_size=5").then((p) => setRecent(p.items)).catch(() => undefined);
    // Public, outside /api/v1: a degraded server answers 503 with the same report.
    fetch("/health/detailed").then((r) => r.json()).then((h: Health) => {
      setHealth(h);
      setFeedFrom((from) => from ?? Math.max(...h.projections.map((p) => p.last_global_seq), 0) - 25);
    }).catch(() => undefined);
  };
  useEffect(load, []);
  useLive("types=Campaign,Firmware,Device", load);
  if (error) return <p role="alert" class="error">{error}</p>;
  if (!stats) return <p class="muted">Loading…</p>;
  const rate = stats.success_rate === null ? "no update decided yet" : `${Math.round(stats.success_rate * 1000) / 10} % of decided updates succeeded`;
  return (
    <>
      <h1>Overview</h1>
      <p>{stats.devices} devices · {stats.firmware} firmware images · {rate}</p>
      {Object.keys(stats.devices_by_firmware).length > 0 && (
        <BarChart title="Devices by installed firmware" labels={Object.keys(stats.devices_by_firmware)}
          values={Object.values(stats.devices_by_firmware)} />
      )}
      <div class="cards">
        <Shares title="Devices by installed firmware" counts={stats.devices_by_firmware} label="Version" />
        <Shares title="Updates by state" counts={stats.updates_by_state} label="State" />
        <Shares title="Campaigns by status" counts={stats.campaigns_by_status} label="Status" />
        <section class="panel">
          <h2>System health</h2>
          {health ? (
            <table><tbody>
              {(["postgres", "nats", "object_store", "relay"] as const).map((k) => (
                <tr key={k}><th scope="row">{k}</th><td data-testid={`health-${k}`}>{health[k].ok ? "ok" : "failing"}</td></tr>
              ))}
              <tr><th scope="row">events not yet on NATS</th><td>{health.relay.unpublished_events ?? 0}</td></tr>
              {health.projections.map((p) => (
                <tr key={p.name}><th scope="row">projection {p.name}</th><td>applied through {p.last_global_seq}</td></tr>
              ))}
            </tbody></table>
          ) : <p class="muted">Checking…</p>}
        </section>
      </div>
      {feedFrom !== null && (
        <section class="panel">
          <h2>Recent activity</h2>
          <ActivityFeed from={feedFrom} />
        </section>
      )}
      <section class="panel">
        <h2>Recent campaigns</h2>
        <ul>{recent.map((c) => <li key={c.id}><a href={`/ui/campaigns/${c.id}`}>{c.name}</a> · {c.status} · {new Date(c.created_at).toLocaleString()}</li>)}</ul>
      </section>
    </>
  );
}
