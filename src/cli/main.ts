console.log('quantlens');
