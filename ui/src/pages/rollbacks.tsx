import { useEffect, useState } from "preact/hooks";
import { api, errorText, Page } from "../api";
import { useLive } from "../live";

interface Rollback {
  device_id: string; action: number; of_action: number; from_version: string | null; to_version: string;
  campaign_id: string | null; requested_by: string | null; requested_at: string; state: string; finished_at: string | null;
}

/** The fleet's rollback log, newest first. */
export function Rollbacks() {
  const [page, setPage] = useState<Page<Rollback> | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => { api<Page<Rollback>>("GET", "/rollbacks?page_size=100").then(setPage).catch((e) => setError(errorText(e))); };
  useEffect(load, []);
  useLive("types=DeviceUpdate", load);
  return (
    <>
      <h1>Rollbacks</h1>
      {error && <p role="alert" class="error">{error}</p>}
      <table>
        <thead><tr><th>Device</th><th>From</th><th>To</th><th>State</th><th>Campaign</th><th>By</th><th>Requested</th></tr></thead>
        <tbody>{page?.items.map((r) => (
          <tr key={`${r.device_id}:${r.action}`}>
            <td><a href={`/ui/devices/${encodeURIComponent(r.device_id)}`}>{r.device_id}</a></td>
            <td>{r.from_version ?? "?"}</td><td>{r.to_version}</td><td>{r.state}</td>
            <td>{r.campaign_id ? <a href={`/ui/campaigns/${r.campaign_id}`}>campaign</a> : ""}</td>
            <td>{r.requested_by ?? ""}</td><td>{new Date(r.requested_at).toLocaleString()}</td>
          </tr>
        ))}</tbody>
      </table>
      {page && <p class="muted">{page.total} rollbacks</p>}
    </>
  );
}
