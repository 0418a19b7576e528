function makeRow(i){ return { id: i, name: 'row' + i, tags: [i, i * 2, String(i)] }; }
function buildTable(n){ const rows = []; for (let i = 0; i < n; i++) rows.push(makeRow(i)); return rows; }
function render(rows){ return rows.map(r => `<tr><td>${r.id}</td><td>${r.name}</td></tr>`).join(''); }
const kept = []; globalThis.kept = kept; // alive when the profile is written at exit
for (let k = 0; k < 30; k++) { const rows = buildTable(5000); kept.push(render(rows)); if (k % 3 === 0) kept.push(rows); }
console.log(kept.length);
