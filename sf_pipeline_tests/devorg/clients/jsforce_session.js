// A small jsforce 3 session against devorg, as a user would write it: SOAP login, REST query and
// insert, Bulk API 1.0 load and query, Bulk API 2.0 query. Prints one JSON object with what it saw.
// Usage: node jsforce_session.js   (DEVORG_URL, DEVORG_USERNAME, DEVORG_PASSWORD in the environment;
// NODE_EXTRA_CA_CERTS pointing at devorg's CA so Node trusts its TLS certificate)
const jsforce = require('jsforce');

function collect(recordStream) {
  return new Promise((resolve, reject) => {
    const out = [];
    recordStream.on('record', (r) => out.push(r));
    recordStream.on('error', reject);
    recordStream.on('end', () => resolve(out));
  });
}

(async () => {
  const conn = new jsforce.Connection({ loginUrl: process.env.DEVORG_URL, version: '59.0' });
  const user = await conn.login(process.env.DEVORG_USERNAME, process.env.DEVORG_PASSWORD);
  const identity = await conn.identity();
  const accounts = await conn.query('SELECT Id, Name FROM Account ORDER BY Name LIMIT 5');
  const created = await conn.sobject('Account').create({ Name: 'jsforce Account', NumberOfEmployees: 42 });
  conn.bulk.pollInterval = 200;
  const loaded = await conn.bulk.load('Contact', 'insert', [
    // jsforce takes the CSV columns from the first record
    { LastName: 'Bulk One', AccountId: created.id, Email: '', FirstName: '' },
    { LastName: 'Bulk Two', AccountId: created.id, Email: 'two@example.com', FirstName: 'Ann' },
    { LastName: '', AccountId: created.id, Email: '', FirstName: 'No last name' },
  ]);
  const bulkContacts = await collect(
    await conn.bulk.query(`SELECT Id, LastName, Email, AccountId FROM Contact WHERE AccountId = '${created.id}'`));
  conn.bulk2.pollInterval = 200;
  const bulk2Accounts = await collect(await conn.bulk2.query('SELECT Id, Name FROM Account'));
  console.log(JSON.stringify({
    userId: user.id, organizationId: user.organizationId, identityUsername: identity.username,
    queried: accounts.records.map((r) => ({ Id: r.Id, Name: r.Name })), totalSize: accounts.totalSize,
    created, loaded, bulkContacts, bulk2AccountCount: bulk2Accounts.length,
  }));
})().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
