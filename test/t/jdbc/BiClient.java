// What a BI tool (Metabase, Superset through JDBC, Tableau) does on sync,
// through PgJDBC: list the relations of the schema it was pointed at, read
// their columns and remarks, sample each relation with SELECT *.  Connected
// as a login role of the reader level of leadmgmt.grant_access().
//
// Usage: java -cp postgresql.jar:. BiClient JDBC_URL SCHEMA [SCHEMA_OF_VIEWS]
// Prints one TAP line per assertion ("ok - ..." / "not ok - ..."); the
// calling test (test/t/004_bi_client.pl) counts them.
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class BiClient
{
	static int failures = 0;

	static void check(boolean ok, String what)
	{
		System.out.println((ok ? "ok - " : "not ok - ") + what);
		if (!ok)
			failures++;
	}

	static boolean numeric(int type)
	{
		switch (type)
		{
			case Types.DOUBLE: case Types.FLOAT: case Types.REAL: case Types.NUMERIC:
			case Types.DECIMAL: case Types.INTEGER: case Types.BIGINT: case Types.SMALLINT:
				return true;
			default:
				return false;
		}
	}

	public static void main(String[] args) throws Exception
	{
		String url = args[0];
		String schema = args[1];
		String viewSchema = args.length > 2 ? args[2] : null;

		try (Connection conn = DriverManager.getConnection(url))
		{
			DatabaseMetaData md = conn.getMetaData();
			check(md.getDriverName().contains("PostgreSQL"), "driver is PgJDBC " + md.getDriverVersion());

			// the relations a sync lists (Metabase asks for these types)
			String[] kinds = {"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "PARTITIONED TABLE"};
			Map<String, String> relations = new LinkedHashMap<>();
			List<String> missingRemarks = new ArrayList<>();
			try (ResultSet rs = md.getTables(null, schema, "%", kinds))
			{
				while (rs.next())
				{
					relations.put(rs.getString("TABLE_NAME"), rs.getString("TABLE_TYPE"));
					String remarks = rs.getString("REMARKS");
					if (remarks == null || remarks.isEmpty())
						missingRemarks.add(rs.getString("TABLE_NAME"));
				}
			}
			check(relations.size() >= 10, "getTables lists " + relations.size() + " relations in " + schema);
			check(missingRemarks.isEmpty(), "every relation has REMARKS " + missingRemarks);

			// columns: remarks, and no Types.OTHER without a numeric companion
			List<String> noRemarks = new ArrayList<>();
			List<String> otherAlone = new ArrayList<>();
			int columns = 0, others = 0;
			for (String rel : relations.keySet())
			{
				Map<String, Integer> types = new LinkedHashMap<>();
				try (ResultSet rs = md.getColumns(null, schema, rel, "%"))
				{
					while (rs.next())
					{
						String col = rs.getString("COLUMN_NAME");
						types.put(col, rs.getInt("DATA_TYPE"));
						String remarks = rs.getString("REMARKS");
						if (remarks == null || remarks.isEmpty())
							noRemarks.add(rel + "." + col);
						columns++;
					}
				}
				for (Map.Entry<String, Integer> e : types.entrySet())
				{
					if (e.getValue() != Types.OTHER)
						continue;
					others++;
					Integer companion = types.get(e.getKey() + "_days");
					if (companion == null || !numeric(companion))
						otherAlone.add(rel + "." + e.getKey());
				}
			}
			check(columns > 0 && noRemarks.isEmpty(),
				  "REMARKS on all " + columns + " columns " + noRemarks);
			check(otherAlone.isEmpty(),
				  "every Types.OTHER column (" + others + ") has a numeric <column>_days companion " + otherAlone);

			// the sync samples every relation with SELECT *
			List<String> failed = new ArrayList<>();
			List<String> otherInResult = new ArrayList<>();
			for (String rel : relations.keySet())
			{
				try (Statement st = conn.createStatement();
					 ResultSet rs = st.executeQuery("SELECT * FROM " + schema + ".\"" + rel + "\" LIMIT 100"))
				{
					ResultSetMetaData rmd = rs.getMetaData();
					while (rs.next())
					{
						for (int i = 1; i <= rmd.getColumnCount(); i++)
							rs.getObject(i);
					}
					for (int i = 1; i <= rmd.getColumnCount(); i++)
						if (rmd.getColumnType(i) == Types.OTHER)
						{
							boolean found = false;
							for (int j = 1; j <= rmd.getColumnCount(); j++)
								if (rmd.getColumnName(j).equals(rmd.getColumnName(i) + "_days")
									&& numeric(rmd.getColumnType(j)))
									found = true;
							if (!found)
								otherInResult.add(rel + "." + rmd.getColumnName(i));
						}
				}
				catch (SQLException e)
				{
					failed.add(rel + " (" + e.getSQLState() + " " + e.getMessage() + ")");
				}
			}
			check(failed.isEmpty(), "SELECT * answers on all " + relations.size() + " relations of " + schema + " " + failed);
			check(otherInResult.isEmpty(), "no Types.OTHER without companion in the result sets " + otherInResult);

			// every view of the extension's own schema answers too
			if (viewSchema != null)
			{
				List<String> views = new ArrayList<>();
				try (ResultSet rs = md.getTables(null, viewSchema, "%", new String[] {"VIEW"}))
				{
					while (rs.next())
						views.add(rs.getString("TABLE_NAME"));
				}
				List<String> viewFailed = new ArrayList<>();
				for (String v : views)
				{
					try (Statement st = conn.createStatement();
						 ResultSet rs = st.executeQuery("SELECT * FROM " + viewSchema + ".\"" + v + "\""))
					{
						while (rs.next())
						{
						}
					}
					catch (SQLException e)
					{
						viewFailed.add(v + " (" + e.getSQLState() + " " + e.getMessage() + ")");
					}
				}
				check(views.size() >= 10 && viewFailed.isEmpty(),
					  "every view of " + viewSchema + " answers (" + views.size() + ") " + viewFailed);
			}

			// a chart: the waterfall with numbers a BI tool can plot
			try (Statement st = conn.createStatement();
				 ResultSet rs = st.executeQuery("SELECT stage, leads_entered, median_time_in_stage_days FROM "
												+ schema + ".funnel ORDER BY position"))
			{
				int rows = 0;
				boolean plotted = false;
				while (rs.next())
				{
					rows++;
					rs.getLong(2);
					double d = rs.getDouble(3);
					if (!rs.wasNull() && d > 0)
						plotted = true;
				}
				check(rows > 0 && plotted, "funnel charts: " + rows + " stages, median time in days as a number");
			}
		}
		System.exit(failures == 0 ? 0 : 1);
	}
}
