import { Aedes } from 'aedes';
import net from 'node:net';
