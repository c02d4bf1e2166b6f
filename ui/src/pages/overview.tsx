import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { useLive } from "../live";

interface Stats {
  devices?: number;
  campaigns_by_status?: Record<string, number>;
  updates_by_state?: Record<string, number>;
  success_rate?: number | null;
  [key: string]: unknown;
}

export function Overview() {
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => { api<Stats>("GET", "/stats").then(setStats).catch((e) => setError(String(e.message ?? e))); };
  useEffect(load, []);
  useLive("types=Campaign", load);
  if (error) return <p role="alert" class="error">{error}</p>;
  if (!stats) return <p class="muted">Loading…</p>;
  const table = (title: string, counts?: Record<string, number>) => (
    <section>
      <h2>{title}</h2>
      <table>
        <tbody>
          {Object.entries(counts ?? {}).map(([k, v]) => <tr key={k}><th scope="row">{k}</th><td>{v}</td></tr>)}
        </tbody>
      </table>
    </section>
  );
  return (
    <>
      <h1>Overview</h1>
      <div class="cards">
        {table("Campaigns by status", stats.campaigns_by_status)}
        {table("Updates by state", stats.updates_by_state)}
      </div>
    </>
  );
}
