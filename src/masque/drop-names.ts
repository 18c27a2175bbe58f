/**
 * Metric label values of drop-reason code tables: one home for each reason's
 * name (the code table's key), so names and counts cannot drift apart.
 */

/**
 * Snake-case names indexed by code, from a `{ NAME: code }` table whose codes
 * are 0..n-1 (e.g. `TOO_BIG: 3` → names[3] = 'too_big'). Throws `masque: …`
 * at module load when the codes are not dense (a programming error).
 */
export function dropNames(codes: Readonly<Record<string, number>>): readonly string[] {
  const names: string[] = [];
  for (const [k, v] of Object.entries(codes)) names[v] = k.toLowerCase();
  for (let i = 0; i < names.length; i++) if (names[i] === undefined) throw new Error(`masque: drop code ${i} has no name`);
  if (names.length !== Object.keys(codes).length) throw new Error('masque: two drop reasons share a code');
  return names;
}
